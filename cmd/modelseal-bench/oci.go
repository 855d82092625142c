package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/modelseal/modelseal/pkg/oci/ocitest"
)

// benchOCI measures modelseal push (hash, upload, sign) and modelseal pull
// (verify the signature against the layer digests, download into a
// temporary folder with every blob checked, move) of a generated model of
// 4 × -large-mb (4 GiB by default) to a loopback docker-registry, next to a
// plain oras-go copy of the same content in the same run (orascopy: what
// `oras push`/`oras pull` do). Each run gets a fresh registry, so no upload
// is skipped as already present. Then `modelseal verify REF` of the signed
// artifact, which downloads no blob. Goals: push and pull within 10% of the
// plain copy, verify under a second.
func benchOCI(c *config) error {
	if !exists(ocitest.DockerRegistryBinary) {
		return fmt.Errorf("%s is not installed: apt-get install -y docker-registry", ocitest.DockerRegistryBinary)
	}
	baseline := filepath.Join(c.work, "orascopy")
	build := exec.Command("go", "build", "-o", baseline, "./cmd/modelseal-bench/orascopy")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build orascopy: %w", err)
	}
	size := 4 * c.large
	model := filepath.Join(c.work, fmt.Sprintf("oci-model-%dmb", size>>20))
	files, err := makeOCIModel(model, size)
	if err != nil {
		return err
	}
	fmt.Printf("model %s: %d files, %.0f MB\n", filepath.Base(model), files, mb(size))
	key := filepath.Join("testdata", "model-signing", "keys", "certificate", "signing-key.pem")
	pub := filepath.Join("testdata", "model-signing", "keys", "certificate", "signing-key-pub.pem")
	if !exists(key) {
		return fmt.Errorf("%s not found: run make bench from the repository root", key)
	}
	// Warm the page cache once, as every command then sees it.
	if _, err := measure([]int{0}, "sh", "-c", "cat "+model+"/* > /dev/null"); err != nil {
		return err
	}
	runs := c.runs
	var (
		oPush, oPull, mPush, mPull []sample
		verifyStats                stats
	)
	for i := 0; i < runs; i++ {
		regDir := filepath.Join(c.work, "oci-registry")
		os.RemoveAll(regDir)
		addr, stop, err := ocitest.StartDockerRegistry(regDir)
		if err != nil {
			return err
		}
		err = func() error {
			defer stop()
			out := filepath.Join(c.work, "oci-pulled")
			// Alternate which tool goes first, so neither always meets a
			// fresher page cache or registry.
			tools := []func() error{
				func() error {
					os.RemoveAll(out)
					s, err := measure([]int{0}, baseline, "push", model, addr+"/bench/oras:v1")
					if err != nil {
						return err
					}
					oPush = append(oPush, s)
					s, err = measure([]int{0}, baseline, "pull", addr+"/bench/oras:v1", out)
					if err != nil {
						return err
					}
					oPull = append(oPull, s)
					return os.RemoveAll(out)
				},
				func() error {
					os.RemoveAll(out)
					ref := addr + "/bench/modelseal:v1"
					s, err := measure([]int{0}, c.bin, "push", "--plain-http", "--sign=key", "--private-key", key, model, ref)
					if err != nil {
						return err
					}
					mPush = append(mPush, s)
					s, err = measure([]int{0}, c.bin, "pull", "--plain-http", "--public-key", pub, ref, out)
					if err != nil {
						return err
					}
					mPull = append(mPull, s)
					if i == runs-1 {
						if verifyStats, err = c.repeat([]int{0}, c.bin, "verify", "key", "--plain-http", "--public-key", pub, ref); err != nil {
							return err
						}
					}
					return os.RemoveAll(out)
				},
			}
			if i%2 == 1 {
				tools[0], tools[1] = tools[1], tools[0]
			}
			for _, t := range tools {
				if err := t(); err != nil {
					return err
				}
			}
			return nil
		}()
		os.RemoveAll(regDir)
		if err != nil {
			return err
		}
	}
	op, ol, mp, ml := medians(oPush), medians(oPull), medians(mPush), medians(mPull)
	row("baseline: oras-go push (file store + Copy)", op, size, 0, nil)
	row("modelseal push --sign (hash once, upload)", mp, size, 0, &op)
	fmt.Printf("  push overhead vs oras-go: %+.1f%% (goal < 10%%)\n", overhead(mp, op))
	row("baseline: oras-go pull (Copy to file store)", ol, size, 0, nil)
	row("modelseal pull (verified, temp + move)", ml, size, 0, &ol)
	fmt.Printf("  pull overhead vs oras-go: %+.1f%% (goal < 10%%)\n", overhead(ml, ol))
	row("modelseal verify REF (no blob download)", verifyStats, 0, 0, nil)
	if verifyStats.wall >= time.Second {
		fmt.Println("  verify REF took more than the 1 s goal")
	}
	return nil
}

func overhead(s, base stats) float64 {
	return 100 * (s.wall.Seconds()/base.wall.Seconds() - 1)
}

// makeOCIModel writes a model folder of about size bytes: four weight
// shards of pseudo-random bytes (a fixed seed: the same content every
// time), a config.json and a README. It keeps a folder already made.
func makeOCIModel(dir string, size int64) (int, error) {
	shards := 4
	names := []string{"config.json", "README.md"}
	for i := 1; i <= shards; i++ {
		names = append(names, fmt.Sprintf("model-%05d-of-%05d.safetensors", i, shards))
	}
	// The completion marker lives next to the folder, not in it (it would
	// be pushed).
	done := dir + ".complete"
	if exists(done) {
		return len(names), nil
	}
	os.Remove(done)
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	small := map[string]string{
		"config.json": `{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"bfloat16"}`,
		"README.md":   "---\nlicense: apache-2.0\n---\n# benchmark model (random bytes)\n",
	}
	for n, body := range small {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			return 0, err
		}
	}
	rng := rand.NewChaCha8([32]byte{'m', 'o', 'd', 'e', 'l', 's', 'e', 'a', 'l'})
	buf := make([]byte, 4<<20)
	for _, n := range names[2:] {
		f, err := os.Create(filepath.Join(dir, n))
		if err != nil {
			return 0, err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		for left := size / int64(shards); left > 0; {
			k := min(int64(len(buf)), left)
			rng.Read(buf[:k])
			if _, err := w.Write(buf[:k]); err != nil {
				f.Close()
				return 0, err
			}
			left -= k
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	return len(names), os.WriteFile(done, nil, 0o644)
}
