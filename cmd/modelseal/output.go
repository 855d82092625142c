package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"
)

// writeOutput runs write against standard output, or against path when it is
// set: a temporary file in the same folder, renamed into place only when the
// whole output was written, so no reader ever sees half a report.
func writeOutput(stdout io.Writer, path string, write func(io.Writer) error) error {
	if path == "" || path == "-" {
		return write(stdout)
	}
	return writeFileAtomic(path, write)
}

// writeFileAtomic writes a file through a temporary sibling and a rename.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// progressBar returns a progress callback that draws on stderr when it is a
// terminal, and nil (no progress output) otherwise, as in CI logs.
func progressBar(stderr io.Writer) func(done, total int, size int64) {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bytes int64
	return func(done, total int, size int64) {
		bytes += size
		width := 30
		filled := width * done / max(total, 1)
		bar := make([]byte, width)
		for i := range bar {
			if i < filled {
				bar[i] = '='
			} else {
				bar[i] = ' '
			}
		}
		fmt.Fprintf(f, "\r[%s] %d/%d files, %.1f MB", bar, done, total, float64(bytes)/1e6)
		if done == total {
			fmt.Fprint(f, "\r\033[K")
		}
	}
}
