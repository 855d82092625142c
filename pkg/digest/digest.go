// Package digest hashes the files of a model in parallel: whole files or
// fixed-size shards of them, with SHA-256, BLAKE2b or BLAKE3. The result is
// computed once and shared by signing (the OMS manifest is a view of it),
// the BOM and OCI packaging.
//
// Every core is used: files and shards are hashed concurrently, largest
// first, with large sequential reads into one fixed buffer per worker, so
// memory does not depend on file sizes.
package digest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/blake2b"
	"lukechampine.com/blake3"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Algorithm names a hash function by its OMS hash_type.
type Algorithm string

// The supported algorithms.
const (
	SHA256  Algorithm = "sha256"
	BLAKE2b Algorithm = "blake2b"
	BLAKE3  Algorithm = "blake3"
)

// DefaultShardSize is model_signing's default shard size (10^9 bytes).
const DefaultShardSize = 1_000_000_000

// DefaultBufferSize is the read size of each worker.
const DefaultBufferSize = 4 << 20

// ParseAlgorithm accepts an OMS hash_type ("blake2" is model_signing's
// older spelling of blake2b).
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "sha256", "SHA256", "sha-256":
		return SHA256, nil
	case "blake2b", "blake2":
		return BLAKE2b, nil
	case "blake3":
		return BLAKE3, nil
	}
	return "", fmt.Errorf("unsupported hash algorithm %q (want sha256, blake2b or blake3)", s)
}

// New returns a new hash for the algorithm.
func (a Algorithm) New() (hash.Hash, error) {
	switch a {
	case SHA256:
		return sha256.New(), nil
	case BLAKE2b:
		return blake2b.New512(nil)
	case BLAKE3:
		return blake3.New(32, nil), nil
	}
	return nil, fmt.Errorf("unsupported hash algorithm %q", string(a))
}

// Size is the digest length in bytes.
func (a Algorithm) Size() int {
	switch a {
	case BLAKE2b:
		return 64
	default:
		return 32
	}
}

// Options controls hashing.
type Options struct {
	// Algorithm defaults to SHA256.
	Algorithm Algorithm
	// ShardSize > 0 hashes files in shards [0,N),[N,2N),...; empty files
	// then produce no item. 0 hashes whole files (one item per file).
	ShardSize int64
	// Workers defaults to GOMAXPROCS.
	Workers int
	// BufferSize is each worker's read size; defaults to DefaultBufferSize.
	BufferSize int
	// Progress, when set, is called after each item with the number of items
	// done, the total and the item's size. Calls are serialised.
	Progress func(done, total int, size int64)
}

// Item is the digest of one file or one shard of a file.
type Item struct {
	// File is the file's name in the set.
	File string
	// Start and End bound the hashed bytes; a whole file is [0, size).
	Start, End int64
	// Sum is the raw digest.
	Sum []byte
}

// Hex is the digest in lower-case hex.
func (it Item) Hex() string { return hex.EncodeToString(it.Sum) }

// Result is the digests of a file set.
type Result struct {
	Algorithm Algorithm
	// ShardSize is 0 for whole-file digests.
	ShardSize int64
	// Items follow the set's file order, shards in offset order.
	Items []Item
}

// File returns the whole-file digest of name (only for unsharded results).
func (r *Result) File(name string) ([]byte, bool) {
	if r.ShardSize != 0 {
		return nil, false
	}
	i, ok := slices.BinarySearchFunc(r.Items, name, func(it Item, n string) int { return modelfs.Compare(it.File, n) })
	if !ok {
		return nil, false
	}
	return r.Items[i].Sum, true
}

type task struct {
	index      int // in Items
	file       *modelfs.File
	start, end int64
}

// Compute hashes every file of set.
func Compute(ctx context.Context, set *modelfs.Set, opts Options) (*Result, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = SHA256
	}
	if _, err := opts.Algorithm.New(); err != nil {
		return nil, err
	}
	if opts.ShardSize < 0 {
		return nil, fmt.Errorf("shard size %d is negative", opts.ShardSize)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	res := &Result{Algorithm: opts.Algorithm, ShardSize: opts.ShardSize}
	var tasks []task
	for i := range set.Files {
		f := &set.Files[i]
		if opts.ShardSize == 0 {
			tasks = append(tasks, task{index: len(res.Items), file: f, start: 0, end: f.Size})
			res.Items = append(res.Items, Item{File: f.Name, Start: 0, End: f.Size})
			continue
		}
		for start := int64(0); start < f.Size; start += opts.ShardSize {
			end := min(start+opts.ShardSize, f.Size)
			tasks = append(tasks, task{index: len(res.Items), file: f, start: start, end: end})
			res.Items = append(res.Items, Item{File: f.Name, Start: start, End: end})
		}
	}
	// Largest first keeps every worker busy until the end.
	order := slices.Clone(tasks)
	slices.SortStableFunc(order, func(a, b task) int {
		la, lb := a.end-a.start, b.end-b.start
		switch {
		case la > lb:
			return -1
		case la < lb:
			return 1
		}
		return 0
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	workers := min(opts.Workers, max(len(order), 1))
	for range workers {
		wg.Go(func() {
			buf := make([]byte, opts.BufferSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(order) || ctx.Err() != nil {
					return
				}
				t := order[i]
				sum, err := hashRange(ctx, t.file, t.start, t.end, opts.Algorithm, buf)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				res.Items[t.index].Sum = sum
				done++
				if opts.Progress != nil {
					opts.Progress(done, len(order), t.end-t.start)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hashing: %w", err)
	}
	return res, nil
}

// ErrChanged reports a file whose size changed while it was hashed.
var ErrChanged = errors.New("file changed while hashing")

func hashRange(ctx context.Context, f *modelfs.File, start, end int64, alg Algorithm, buf []byte) ([]byte, error) {
	h, err := alg.New()
	if err != nil {
		return nil, err
	}
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	adviseSequential(r, start, end-start)
	if mapped, err := hashMapped(ctx, r, f.Name, start, end, h); mapped {
		if err != nil {
			return nil, err
		}
		return finish(f, r, end, buf, h)
	}
	off := start
	for off < end {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("hashing %s: %w", f.Name, err)
		}
		n := int(min(int64(len(buf)), end-off))
		m, err := r.ReadAt(buf[:n], off)
		h.Write(buf[:m])
		off += int64(m)
		if err == io.EOF && off < end {
			return nil, fmt.Errorf("hashing %s: %w (ended at %d, expected %d bytes)", f.Name, ErrChanged, off, end)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("hashing %s: %w", f.Name, err)
		}
	}
	return finish(f, r, end, buf, h)
}

// finish checks that a file did not grow past the listed size, then
// returns the digest.
func finish(f *modelfs.File, r io.ReaderAt, end int64, buf []byte, h hash.Hash) ([]byte, error) {
	if end == f.Size {
		// A file that grew after the listing would be signed truncated.
		if m, _ := r.ReadAt(buf[:1], end); m > 0 {
			return nil, fmt.Errorf("hashing %s: %w (larger than the %d bytes listed)", f.Name, ErrChanged, end)
		}
	}
	return h.Sum(nil), nil
}

// Root is the OMS root digest: SHA-256 over the concatenated raw digests in
// the given order.
func Root(sums [][]byte) []byte {
	h := sha256.New()
	for _, s := range sums {
		h.Write(s)
	}
	return h.Sum(nil)
}
