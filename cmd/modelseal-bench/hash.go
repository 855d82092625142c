package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hashModelBytes is the size of the generated model folder; the issue asks
// for at least 4 GB. MODELSEAL_BENCH_HASH_MB overrides it.
const hashModelBytes = 4 << 30

// benchHash measures `modelseal hash` on a generated model folder, warm in
// the page cache, against two yardsticks: Go's crypto/sha256 over memory on
// every core (the bound for SHA-256 on this machine) and one
// `openssl dgst -sha256` process per core over the same files.
func benchHash(c *config) error {
	size := int64(hashModelBytes)
	if v := os.Getenv("MODELSEAL_BENCH_HASH_MB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("MODELSEAL_BENCH_HASH_MB=%q", v)
		}
		size = n << 20
	}
	dir := filepath.Join(c.work, fmt.Sprintf("hash-model-%dmb", size>>20))
	files, err := makeHashModel(dir, size)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	cores := runtime.NumCPU()
	fmt.Printf("  model: %s, %d files, %.2f GB; %d cores\n", dir, len(files), float64(total)/1e9, cores)
	// Warm the page cache, and check our digests against openssl's.
	if err := checkAgainstOpenSSL(c.bin, dir, files); err != nil {
		return err
	}

	// The machines are shared and noisy: interleave the commands, run by
	// run, so that every one sees the same load, and report medians.
	cmds := [][]string{
		{"hash", dir},
		{"hash", "--shard-size", "1000000000", dir},
		{"hash", "--hash-algorithm", "blake3", dir},
	}
	samples := make([][]sample, len(cmds)+2)
	groups := splitLPT(files, cores)
	for r := 0; r < c.runs; r++ {
		for i, args := range cmds {
			s, err := measure([]int{0}, c.bin, args...)
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
		}
		s, err := parallelOpenSSL(dir, groups)
		if err != nil {
			return err
		}
		samples[len(cmds)] = append(samples[len(cmds)], s)
		// An 8 MB buffer keeps this process small (children inherit its
		// peak RSS at fork); SHA-256's rate does not depend on the size.
		samples[len(cmds)+1] = append(samples[len(cmds)+1], memoryBound(cores, 8<<20, 64, total))
	}
	med := make([]stats, len(samples))
	for i, ss := range samples {
		med[i] = medians(ss)
	}
	ours, shards, b3, ossl, mem := med[0], med[1], med[2], med[3], med[4]

	row("Go crypto/sha256 over memory × cores", mem, total, 0, nil)
	row(fmt.Sprintf("openssl dgst -sha256, %d processes", cores), ossl, total, len(files), &mem)
	row("modelseal hash (files, sha256)", ours, total, len(files), &ossl)
	row("modelseal hash (1 GB shards, sha256)", shards, total, len(files), &ossl)
	row("modelseal hash (files, blake3)", b3, total, len(files), &ossl)
	// Whole-file hashing cannot split one file across cores: its bound is
	// the in-memory rate reduced by the best largest-first schedule.
	var makespan int64
	for _, g := range groups {
		makespan = max(makespan, totalSize(g))
	}
	ideal := float64(total) / float64(cores)
	fileBound := mem.wall.Seconds() * float64(makespan) / ideal
	fmt.Printf("  shards/sha256 reach %.0f%% of the in-memory SHA-256 bound (goal 85%%)\n", 100*mem.wall.Seconds()/shards.wall.Seconds())
	fmt.Printf("  files/sha256 reach %.0f%% of the whole-file bound (largest-first schedule: %.2f of the in-memory bound; goal 85%%)\n",
		100*fileBound/ours.wall.Seconds(), ideal/float64(makespan))
	fmt.Printf("  vs openssl one process per core: files ×%.2f, shards ×%.2f, blake3 ×%.2f (goal > 1)\n",
		ossl.wall.Seconds()/ours.wall.Seconds(), ossl.wall.Seconds()/shards.wall.Seconds(), ossl.wall.Seconds()/b3.wall.Seconds())
	for _, s := range []stats{ours, shards, b3} {
		if s.maxRSS > 100e6 {
			return fmt.Errorf("peak RSS %.1f MB exceeds 100 MB", mb(s.maxRSS))
		}
	}
	return nil
}

type genFile struct {
	name string
	size int64
}

// hashModelLayout is a model folder like a sharded checkpoint: a few large
// weight files, a medium one, and many small ones, totalling size.
func hashModelLayout(size int64) []genFile {
	var files []genFile
	small := size / 20 // 5% in 1 MB files
	for i := int64(0); i < small/(1<<20); i++ {
		files = append(files, genFile{fmt.Sprintf("tokenizer/part-%04d.bin", i), 1 << 20})
	}
	rest := size - int64(len(files))<<20
	medium := rest / 7
	files = append(files, genFile{"adapter/adapter_model.safetensors", medium})
	rest -= medium
	for i := int64(0); i < 3; i++ {
		n := rest / 3
		if i == 2 {
			n = rest - 2*(rest/3)
		}
		files = append(files, genFile{fmt.Sprintf("model-%05d-of-00003.safetensors", i+1), n})
	}
	return files
}

func makeHashModel(dir string, size int64) ([]genFile, error) {
	files := hashModelLayout(size)
	buf := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	for i, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if fi, err := os.Stat(p); err == nil && fi.Size() == f.size {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		out, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		w := bufio.NewWriterSize(out, len(buf))
		for left, block := f.size, uint64(0); left > 0; block++ {
			binary.LittleEndian.PutUint64(buf, uint64(i)<<40|block) // no two blocks alike
			n := min(left, int64(len(buf)))
			if _, err := w.Write(buf[:n]); err != nil {
				out.Close()
				return nil, err
			}
			left -= n
		}
		if err := w.Flush(); err != nil {
			out.Close()
			return nil, err
		}
		if err := out.Close(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// splitLPT assigns files to n groups, largest first to the lightest group.
func splitLPT(files []genFile, n int) [][]genFile {
	sorted := append([]genFile{}, files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].size > sorted[j].size })
	groups := make([][]genFile, n)
	load := make([]int64, n)
	for _, f := range sorted {
		k := 0
		for j := range load {
			if load[j] < load[k] {
				k = j
			}
		}
		groups[k] = append(groups[k], f)
		load[k] += f.size
	}
	return groups
}

// parallelOpenSSL runs one openssl process per group at once; the wall
// time is the slowest's, the peak RSS the largest of one process.
func parallelOpenSSL(dir string, groups [][]genFile) (sample, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	rss := make([]int64, len(groups))
	start := time.Now()
	for g, group := range groups {
		args := []string{"dgst", "-sha256"}
		for _, f := range group {
			args = append(args, filepath.Join(dir, filepath.FromSlash(f.name)))
		}
		wg.Go(func() {
			s, err := measure([]int{0}, "openssl", args...)
			errs[g], rss[g] = err, s.maxRSS
		})
	}
	wg.Wait()
	out := sample{wall: time.Since(start)}
	for g := range groups {
		if errs[g] != nil {
			return out, errs[g]
		}
		out.maxRSS = max(out.maxRSS, rss[g])
	}
	return out, nil
}

func totalSize(files []genFile) int64 {
	var n int64
	for _, f := range files {
		n += f.size
	}
	return n
}

// memoryBound hashes a buffer already in memory on every core, rounds
// times per core, and returns the time scale bytes take at that rate.
func memoryBound(cores, bufSize, rounds int, scale int64) sample {
	buf := make([]byte, bufSize)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range cores {
		wg.Go(func() {
			for range rounds {
				sha256.Sum256(buf)
			}
		})
	}
	wg.Wait()
	perByte := time.Since(start).Seconds() / float64(cores*rounds*bufSize)
	return sample{wall: time.Duration(perByte * float64(scale) * float64(time.Second))}
}

// checkAgainstOpenSSL runs modelseal hash and openssl once (warming the
// cache) and compares every file digest.
func checkAgainstOpenSSL(bin, dir string, files []genFile) error {
	out, err := exec.Command(bin, "hash", dir).Output()
	if err != nil {
		return fmt.Errorf("modelseal hash: %w", err)
	}
	ours := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.SplitN(line, "  ", 2); len(f) == 2 {
			ours[f[1]] = f[0]
		}
	}
	// Check the large files and a sample of the small ones.
	var args []string
	for i, f := range files {
		if f.size > 1<<20 || i%50 == 0 {
			args = append(args, filepath.Join(dir, filepath.FromSlash(f.name)))
		}
	}
	out, err = exec.Command("openssl", append([]string{"dgst", "-sha256", "-r"}, args...)...).Output()
	if err != nil {
		return fmt.Errorf("openssl: %w", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " *", 2)
		if len(f) != 2 {
			continue
		}
		rel, _ := filepath.Rel(dir, f[1])
		if ours[filepath.ToSlash(rel)] != f[0] {
			return fmt.Errorf("digest of %s: modelseal %s, openssl %s", rel, ours[filepath.ToSlash(rel)], f[0])
		}
		checked++
	}
	fmt.Printf("  %d file digests identical to openssl's\n", checked)
	return nil
}
