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

// benchScan7B scans a folder shaped like a real 7B model: four safetensors
// shards of c.large bytes each (the tensor regions are sparse holes, so the
// folder costs no disk; their headers list 7B-style tensor names, shapes
// and offsets), the index, config.json, tokenizer files and a README. It
// reports wall time, the bytes modelseal read and peak memory: the headers
// must be read without touching the tensor data.
func benchScan7B(c *config) error {
	dir := filepath.Join(c.work, "model-7b")
	total, err := make7B(dir, c.large)
	if err != nil {
		return err
	}
	fmt.Printf("7B-shaped folder: 4 shards of %.0f MB (%.1f GB in all, tensor data sparse)\n", mb(c.large), float64(total)/1e9)
	s, err := c.repeat([]int{0}, c.bin, "scan", "--format", "json", "--output", os.DevNull, dir)
	if err != nil {
		return err
	}
	row("modelseal scan (bytes read ≈ headers only)", s, total, 0, nil)
	if s.rchar >= 0 {
		fmt.Printf("  read %.3f%% of the folder's %.1f GB\n", 100*float64(s.rchar)/float64(total), float64(total)/1e9)
	}
	return nil
}

// make7B writes the folder (once) and returns its total size.
func make7B(dir string, shard int64) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	const layers, hidden, inter = 32, 4096, 11008
	type tensor struct {
		name  string
		shape []int64
	}
	var all []tensor
	all = append(all, tensor{"model.embed_tokens.weight", []int64{32000, hidden}})
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, n := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"} {
			all = append(all, tensor{p + n + ".weight", []int64{hidden, hidden}})
		}
		for _, n := range []string{"mlp.gate_proj", "mlp.up_proj"} {
			all = append(all, tensor{p + n + ".weight", []int64{inter, hidden}})
		}
		all = append(all, tensor{p + "mlp.down_proj.weight", []int64{hidden, inter}})
		all = append(all, tensor{p + "input_layernorm.weight", []int64{hidden}}, tensor{p + "post_attention_layernorm.weight", []int64{hidden}})
	}
	all = append(all, tensor{"model.norm.weight", []int64{hidden}}, tensor{"lm_head.weight", []int64{32000, hidden}})
	weightMap := map[string]string{}
	var total int64
	per := (len(all) + 3) / 4
	for s := 0; s < 4; s++ {
		name := fmt.Sprintf("model-%05d-of-00004.safetensors", s+1)
		lo, hi := s*per, min((s+1)*per, len(all))
		// Scale bf16 tensors so that the shard holds about `shard` bytes.
		var natural int64
		for _, t := range all[lo:hi] {
			n := int64(2)
			for _, d := range t.shape {
				n *= d
			}
			natural += n
		}
		header := "{"
		var off int64
		for i, t := range all[lo:hi] {
			n := int64(2)
			for _, d := range t.shape {
				n *= d
			}
			n = max(2, n*shard/natural/2*2)
			shape := fmt.Sprintf("[%d]", n/2)
			if i > 0 {
				header += ","
			}
			header += fmt.Sprintf("%q:{\"dtype\":\"BF16\",\"shape\":%s,\"data_offsets\":[%d,%d]}", t.name, shape, off, off+n)
			off += n
			weightMap[t.name] = name
		}
		header += `,"__metadata__":{"format":"pt"}}`
		for len(header)%8 != 0 {
			header += " "
		}
		p := filepath.Join(dir, name)
		size := 8 + int64(len(header)) + off
		total += size
		if st, err := os.Stat(p); err == nil && st.Size() == size {
			continue
		}
		f, err := os.Create(p)
		if err != nil {
			return 0, err
		}
		var n [8]byte
		for i := 0; i < 8; i++ {
			n[i] = byte(uint64(len(header)) >> (8 * i))
		}
		f.Write(n[:])
		f.WriteString(header)
		if err := f.Truncate(size); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	index := `{"metadata":{"total_size":` + strconv.FormatInt(total, 10) + `},"weight_map":{`
	first := true
	for _, t := range all {
		if !first {
			index += ","
		}
		first = false
		index += fmt.Sprintf("%q:%q", t.name, weightMap[t.name])
	}
	index += "}}"
	files := map[string]string{
		"model.safetensors.index.json": index,
		"config.json":                  `{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"num_hidden_layers":32,"torch_dtype":"bfloat16"}`,
		"generation_config.json":       `{"bos_token_id":1,"eos_token_id":2}`,
		"tokenizer_config.json":        `{"bos_token":"<s>","eos_token":"</s>","chat_template":"{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '</s>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"}`,
		"tokenizer.json":               `{"version":"1.0","model":{"type":"BPE","vocab":{"<s>":1,"</s>":2}}}`,
		"special_tokens_map.json":      `{"bos_token":"<s>","eos_token":"</s>"}`,
		"README.md":                    "---\nlicense: apache-2.0\npipeline_tag: text-generation\n---\n# A 7B-shaped benchmark model\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return 0, err
		}
		total += int64(len(content))
	}
	return total, nil
}
