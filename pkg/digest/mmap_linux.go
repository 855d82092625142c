package digest

import (
	"context"
	"fmt"
	"hash"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// mmapWindow is how much of a file is mapped at a time: mapped pages count
// in the process's resident memory, so windows are kept small.
const mmapWindow = 16 << 20

// minMmap is the smallest range worth mapping; smaller ones are read.
const minMmap = 16 << 20

// hashMapped hashes [start, end) of f by mapping it into memory window by
// window, which saves copying every byte out of the page cache (about a
// tenth of SHA-256's cost). It reports false when the file cannot be
// mapped, and the caller reads it instead. A file truncated while mapped
// raises SIGBUS on access; with SetPanicOnFault that becomes a panic that
// is recovered here and reported as ErrChanged.
func hashMapped(ctx context.Context, r any, name string, start, end int64, h hash.Hash) (ok bool, err error) {
	f, isFile := r.(*os.File)
	if !isFile || end-start < minMmap {
		return false, nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var mapped []byte
	defer func() {
		if mapped != nil {
			_ = unix.Munmap(mapped)
		}
		if p := recover(); p != nil {
			if re, isRuntime := p.(interface{ Addr() uintptr }); isRuntime && re != nil {
				ok, err = true, fmt.Errorf("hashing %s: %w (it shrank while mapped)", name, ErrChanged)
				return
			}
			panic(p)
		}
	}()
	page := int64(os.Getpagesize())
	for off := start; off < end; {
		if err := ctx.Err(); err != nil {
			return true, fmt.Errorf("hashing %s: %w", name, err)
		}
		base := off / page * page
		n := min(end-base, mmapWindow)
		m, merr := unix.Mmap(int(f.Fd()), base, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
		if merr != nil {
			if off == start {
				return false, nil // not mappable (a pipe, a special file system): read it
			}
			return true, fmt.Errorf("hashing %s: mapping at %d: %w", name, base, merr)
		}
		mapped = m
		_ = unix.Madvise(m, unix.MADV_SEQUENTIAL|unix.MADV_WILLNEED)
		h.Write(m[off-base : n])
		off = base + n
		if err := unix.Munmap(m); err != nil {
			mapped = nil
			return true, fmt.Errorf("hashing %s: %w", name, err)
		}
		mapped = nil
	}
	return true, nil
}
