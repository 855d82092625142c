package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// benchBOM measures the BOM of a generated 4×large-MB model folder (four
// safetensors shards plus the Hugging Face metadata files): bom alone,
// signing alone, and sign --bom, which must reuse the signing digests so
// that signing and BOM in one run cost at most 1.1× signing alone.
func benchBOM(c *config) error {
	dir := filepath.Join(c.work, fmt.Sprintf("bom-model-%dmb", 4*c.large>>20))
	if err := makeBOMModel(dir, c.large); err != nil {
		return err
	}
	key := filepath.Join(c.work, "bench-key.pem")
	if err := makeKey(key); err != nil {
		return err
	}
	var total int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	fmt.Printf("model folder %s (%.0f MB, %d files)\n", filepath.Base(dir), mb(total), len(entries))
	sig := filepath.Join(c.work, "bench-model.sig")
	bomOut := filepath.Join(c.work, "bench-bom.json")
	// Warm the page cache once so every command sees the same cache.
	if _, err := measure([]int{0}, "sh", "-c", "cat "+filepath.Join(dir, "*")+" > /dev/null"); err != nil {
		return err
	}
	base, err := c.repeat([]int{0}, "sh", "-c", "cat "+filepath.Join(dir, "*")+" > /dev/null")
	if err != nil {
		return err
	}
	row("baseline: cat (read every byte)", base, total, 0, nil)
	// The three commands are interleaved run by run, so that drift in the
	// machine's load touches them alike.
	cmds := [][]string{
		{"bom", "-o", bomOut, dir},
		{"sign", "key", "--private-key", key, "--signature", sig, dir},
		{"sign", "key", "--private-key", key, "--signature", sig, "--bom", bomOut, dir},
	}
	samples := make([][]sample, len(cmds))
	for r := 0; r < c.runs; r++ {
		for i, args := range cmds {
			s, err := measure([]int{0}, c.bin, args...)
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
		}
	}
	bom, signAlone, both := medians(samples[0]), medians(samples[1]), medians(samples[2])
	row("modelseal bom", bom, total, 0, &base)
	row("modelseal sign key", signAlone, total, 0, &base)
	row("modelseal sign key --bom", both, total, 0, &base)
	ratio := both.wall.Seconds() / signAlone.wall.Seconds()
	verdict := "ok"
	if ratio > 1.1 {
		verdict = "OVER the 1.1 goal"
	}
	fmt.Printf("  sign --bom / sign alone = %.3f (goal ≤ 1.10: %s); bom + sign separately = %.3fs\n",
		ratio, verdict, bom.wall.Seconds()+signAlone.wall.Seconds())
	return nil
}

// makeBOMModel writes four safetensors shards of shard bytes each (one F32
// tensor, zero data) and the metadata files of a Hugging Face model.
func makeBOMModel(dir string, shard int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"README.md":   "---\nlicense: apache-2.0\npipeline_tag: text-generation\nlibrary_name: transformers\nlanguage: [en]\ndatasets: [wikitext]\nmetrics: [perplexity]\n---\n# bench model\n",
		"config.json": `{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"float32"}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	for i := 1; i <= 4; i++ {
		p := filepath.Join(dir, fmt.Sprintf("model-%05d-of-00004.safetensors", i))
		if fi, err := os.Stat(p); err == nil && fi.Size() >= shard {
			continue
		}
		n := (shard - 4096) / 4
		h, _ := json.Marshal(map[string]any{fmt.Sprintf("layer%d.weight", i): map[string]any{"dtype": "F32", "shape": []int64{n}, "data_offsets": []int64{0, n * 4}}})
		for len(h)%8 != 0 {
			h = append(h, ' ')
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		var lenb [8]byte
		binary.LittleEndian.PutUint64(lenb[:], uint64(len(h)))
		f.Write(lenb[:])
		f.Write(h)
		// Real bytes, not a sparse hole: write the data in 4 MiB blocks.
		block := make([]byte, 4<<20)
		for i := range block {
			block[i] = byte(i * 7)
		}
		for left := n * 4; left > 0; {
			w := min(left, int64(len(block)))
			if _, err := f.Write(block[:w]); err != nil {
				f.Close()
				return err
			}
			left -= w
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// makeKey writes a P-256 private key for the signing measurements.
func makeKey(path string) error {
	if exists(path) {
		return nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}
