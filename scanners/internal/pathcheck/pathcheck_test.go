package pathcheck

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUnsafe(t *testing.T) {
	tests := []struct {
		name          string
		unsafe, inZip bool
	}{
		{"model.safetensors", false, false},
		{"sub/dir/data.bin", false, false},
		{"a..b/c", false, false},
		{"", true, true},
		{"/etc/passwd", true, true},
		{`\\server\share`, true, true},
		{"C:/x", true, true},
		{"../x", true, true},
		{"a/../../x", true, true},
		{`a\..\x`, true, true},
		{"a\x00b", true, true},
		{`dir\file`, false, true}, // a separator to Windows loaders, odd in an archive
	}
	for _, tt := range tests {
		if got := Unsafe(tt.name) != ""; got != tt.unsafe {
			t.Errorf("Unsafe(%q) = %v, want %v", tt.name, got, tt.unsafe)
		}
		if got := ArchiveName(tt.name) != ""; got != tt.inZip {
			t.Errorf("ArchiveName(%q) = %v, want %v", tt.name, got, tt.inZip)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(dir, "data.bin"), []byte("12345"), 0o644)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "escape"))
	os.Symlink("data.bin", filepath.Join(dir, "inside"))
	tests := []struct {
		name string
		err  error
		size int64
	}{
		{"data.bin", nil, 5},
		{"inside", nil, 5},
		{"escape", ErrEscape, 0},
		{"missing", ErrMissing, 0},
		{"sub", ErrNotRegular, 0},
	}
	for _, tt := range tests {
		_, size, err := Resolve(dir, tt.name)
		if !errors.Is(err, tt.err) || (tt.err == nil && size != tt.size) {
			t.Errorf("Resolve(%q) = %d, %v; want %d, %v", tt.name, size, err, tt.size, tt.err)
		}
	}
}
