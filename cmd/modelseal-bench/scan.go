package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// benchScan measures scan throughput on a large real PyTorch checkpoint (made
// by python3-torch when it is installed) and on a folder of many small
// pickles, next to two baselines measured in the same run: reading the file
// sequentially (cat to /dev/null: what any scanner that reads tensor data
// pays) and picklescan's method, pickletools.genops over every pickle member
// (CPython's own opcode walker, when python3 is installed). Memory must stay
// flat as the checkpoint grows: the 1/4-size checkpoint is scanned too.
func benchScan(c *config) error {
	sizes := []int64{c.large / 4, c.large}
	for _, size := range sizes {
		ckpt := filepath.Join(c.work, fmt.Sprintf("checkpoint-%dmb.pt", size>>20))
		if err := makeCheckpoint(c, ckpt, size); err != nil {
			return err
		}
		st, _ := os.Stat(ckpt)
		fmt.Printf("checkpoint %s (%.0f MB)\n", filepath.Base(ckpt), mb(st.Size()))
		// Warm the page cache once so every command sees the same cache.
		if _, err := measure([]int{0}, "sh", "-c", "cat "+strconv.Quote(ckpt)+" > /dev/null"); err != nil {
			return err
		}
		base, err := c.repeat([]int{0}, "sh", "-c", "cat "+strconv.Quote(ckpt)+" > /dev/null")
		if err != nil {
			return err
		}
		row("baseline: cat (read every byte)", base, st.Size(), 0, nil)
		if exists(c.python) {
			gen, err := c.repeat([]int{0}, c.python, "-c", genopsScript, ckpt)
			if err == nil {
				row("baseline: pickletools.genops (picklescan)", gen, st.Size(), 0, &base)
			} else {
				fmt.Println("  (pickletools baseline failed:", err, ")")
			}
		}
		s, err := c.repeat([]int{0}, c.bin, "scan", "--format", "json", "--output", os.DevNull, ckpt)
		if err != nil {
			return err
		}
		row("modelseal scan", s, st.Size(), 0, &base)
	}
	// A folder of many small pickles.
	folder := filepath.Join(c.work, "small-pickles")
	n, bytes, err := makeSmallPickles(folder, 5000)
	if err != nil {
		return err
	}
	fmt.Printf("folder of %d small pickles (%.1f MB)\n", n, mb(bytes))
	base, err := c.repeat([]int{0}, "sh", "-c", "cat "+strconv.Quote(folder)+"/* > /dev/null")
	if err != nil {
		return err
	}
	row("baseline: cat every file", base, bytes, n, nil)
	if exists(c.python) {
		gen, err := c.repeat([]int{0}, c.python, "-c", genopsFolderScript, folder)
		if err == nil {
			row("baseline: pickletools.genops per file", gen, bytes, n, &base)
		}
	}
	s, err := c.repeat([]int{0}, c.bin, "scan", "--format", "json", "--output", os.DevNull, folder)
	if err != nil {
		return err
	}
	row("modelseal scan", s, bytes, n, &base)
	return nil
}

// makeCheckpoint writes a real torch.save checkpoint of about size bytes:
// a state dict of float32 tensors of 16 MB each.
func makeCheckpoint(c *config, path string, size int64) error {
	if st, err := os.Stat(path); err == nil && st.Size() >= size {
		return nil
	}
	if !exists(c.python) {
		return fmt.Errorf("making %s needs %s with python3-torch", path, c.python)
	}
	script := `
import sys, torch
path, size = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
n = max(1, size // (16 << 20))
sd = {f"layers.{i}.weight": torch.empty(4 << 20, dtype=torch.float32).uniform_() for i in range(n)}
sd["layers.bias"] = torch.zeros(10)
torch.save(sd, path + ".tmp")
`
	cmd := exec.Command(c.python, "-c", script, path, strconv.FormatInt(size, 10))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("generating %s with python3-torch: %w", path, err)
	}
	return os.Rename(path+".tmp", path)
}

// makeSmallPickles writes n small benign pickles (a protocol-2 state-dict
// shaped dict, as sklearn and torch objects look) of a few KB each.
func makeSmallPickles(dir string, n int) (int, int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	var total int64
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("p%05d.pkl", i))
		data := smallPickle(i)
		total += int64(len(data))
		if st, err := os.Stat(p); err == nil && st.Size() == int64(len(data)) {
			continue
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return 0, 0, err
		}
	}
	return n, total, nil
}

// smallPickle is a protocol-2 OrderedDict of 64 named lists of ints.
func smallPickle(seed int) []byte {
	b := []byte("\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(")
	for k := 0; k < 64; k++ {
		name := fmt.Sprintf("layer.%d.weight", k)
		b = append(b, 'X')
		b = append(b, byte(len(name)), 0, 0, 0)
		b = append(b, name...)
		b = append(b, ']', '(')
		for v := 0; v < 8; v++ {
			b = append(b, 'K', byte(seed+k+v))
		}
		b = append(b, 'e')
	}
	return append(b, 'u', '.')
}

// genopsScript walks every pickle in a zip checkpoint with pickletools.genops,
// as picklescan does (it never unpickles).
const genopsScript = `
import sys, zipfile, pickletools
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.endswith(".pkl"):
            for _ in pickletools.genops(z.read(name)):
                pass
`

const genopsFolderScript = `
import sys, os, pickletools
d = sys.argv[1]
for name in sorted(os.listdir(d)):
    with open(os.path.join(d, name), "rb") as f:
        for _ in pickletools.genops(f.read()):
            pass
`
