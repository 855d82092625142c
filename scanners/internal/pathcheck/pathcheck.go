// Package pathcheck judges file names that one model file uses to point at
// another (safetensors index shards, ONNX external data): they must stay
// inside the model's folder, in name and after symbolic links.
package pathcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Unsafe returns why name is not a plain relative path that stays in its
// folder, or "" when it is. Both '/' and '\' count as separators, since a
// loader on Windows splits on either.
func Unsafe(name string) string {
	switch {
	case name == "":
		return "the name is empty"
	case strings.IndexByte(name, 0) >= 0:
		return "the name contains a NUL byte"
	case name[0] == '/' || name[0] == '\\':
		return "the name is an absolute path"
	case len(name) >= 2 && name[1] == ':' && (name[0]|0x20 >= 'a' && name[0]|0x20 <= 'z'):
		return "the name starts with a Windows drive letter"
	}
	for _, c := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if c == ".." {
			return "the name climbs out of the folder with '..'"
		}
	}
	return ""
}

// ArchiveName returns why an archive member name is unsafe to extract, or
// "": what Unsafe refuses, and any backslash (a separator on Windows, and
// never in a name a real tool writes).
func ArchiveName(name string) string {
	if why := Unsafe(name); why != "" {
		return why
	}
	if strings.Contains(name, `\`) {
		return "the name contains a backslash"
	}
	return ""
}

// Errors of Resolve.
var (
	ErrMissing    = errors.New("no such file")
	ErrEscape     = errors.New("resolves outside the model folder")
	ErrNotRegular = errors.New("not a regular file")
)

// Resolve finds name, which Unsafe accepted, in dir, following symbolic
// links, and returns the resolved path and the file's size. The error wraps
// ErrMissing, ErrEscape or ErrNotRegular.
func Resolve(dir, name string) (string, int64, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", 0, fmt.Errorf("model folder %s: %w", dir, err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return "", 0, fmt.Errorf("model folder %s: %w", dir, err)
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Lstat(p); err != nil {
		return "", 0, fmt.Errorf("%s: %w", name, ErrMissing)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", 0, fmt.Errorf("%s: broken symbolic link: %w", name, ErrMissing)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", name, err)
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return real, 0, fmt.Errorf("%s -> %s: %w", name, real, ErrEscape)
	}
	st, err := os.Stat(real)
	if err != nil {
		return real, 0, fmt.Errorf("%s: %w", name, ErrMissing)
	}
	if !st.Mode().IsRegular() {
		return real, 0, fmt.Errorf("%s (%s): %w", name, st.Mode().Type(), ErrNotRegular)
	}
	return real, st.Size(), nil
}
