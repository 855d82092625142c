package modelfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tree(t *testing.T, files ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if strings.HasSuffix(f, "/") {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(s *Set) string {
	var n []string
	for _, f := range s.Files {
		n = append(n, f.Name)
	}
	return strings.Join(n, " ")
}

func TestOpen(t *testing.T) {
	files := []string{"a-c", "a/b", "a/.dot", ".gitignore", ".git/HEAD", ".github/workflows/x.yml", "sub/.git/keep", "sub/.gitignore", "empty/", "docs/README.md", "docs/img/x.png", "model.sig"}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"defaults", Options{}, "a/.dot a/b a-c docs/README.md docs/img/x.png model.sig sub/.git/keep sub/.gitignore"},
		{"user ignores", Options{Ignore: []string{"docs", "./model.sig", "a/b/"}}, "a/.dot a-c sub/.git/keep sub/.gitignore"},
		{"no default ignores", Options{NoDefaultIgnores: true, Ignore: []string{"model.sig"}}, ".git/HEAD .github/workflows/x.yml .gitignore a/.dot a/b a-c docs/README.md docs/img/x.png sub/.git/keep sub/.gitignore"},
		{"prefix is not a folder match", Options{Ignore: []string{"do", "a-"}}, "a/.dot a/b a-c docs/README.md docs/img/x.png model.sig sub/.git/keep sub/.gitignore"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tree(t, files...), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(s); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			for _, f := range s.Files {
				if g, ok := s.Get(f.Name); !ok || g.Size != int64(len(f.Name)) {
					t.Errorf("Get(%s) = %+v %v", f.Name, g, ok)
				}
			}
		})
	}
	for _, bad := range []string{"../x", "/etc", "."} {
		if _, err := Open(tree(t, "a"), Options{Ignore: []string{bad}}); err == nil {
			t.Errorf("ignore %q accepted", bad)
		}
	}
}

func TestSingleFile(t *testing.T) {
	dir := tree(t, "w.safetensors")
	s, err := Open(filepath.Join(dir, "w.safetensors"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.SingleFile || s.Name != "w.safetensors" || names(s) != "w.safetensors" {
		t.Errorf("%+v", s)
	}
	r, err := s.Files[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 3)
	if _, err := r.ReadAt(buf, 2); err != nil || string(buf) != "saf" {
		t.Errorf("ReadAt: %q %v", buf, err)
	}
}

func TestSymlinks(t *testing.T) {
	dir := tree(t, "real.bin", "sub/x")
	outside := filepath.Join(filepath.Dir(dir), "outside")
	os.WriteFile(outside, []byte("secret"), 0o644)
	if err := os.Symlink("real.bin", filepath.Join(dir, "link.bin")); err != nil {
		t.Skip("no symbolic links:", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrSymlink) {
		t.Fatalf("default policy: %v", err)
	}
	s, err := Open(dir, Options{Symlinks: FollowSymlinks})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(s); got != "link.bin real.bin sub/x" {
		t.Errorf("followed: %s", got)
	}
	os.Symlink("sub", filepath.Join(dir, "dirlink"))
	if _, err := Open(dir, Options{Symlinks: FollowSymlinks}); !errors.Is(err, ErrSymlink) {
		t.Errorf("link to a folder: %v", err)
	}
	os.Remove(filepath.Join(dir, "dirlink"))
	os.Symlink("../../outside", filepath.Join(dir, "sub/escape"))
	_, err = Open(dir, Options{Symlinks: FollowSymlinks})
	if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), "escapes") {
		t.Errorf("escape: %v", err)
	}
	// A wider bound (a Hugging Face cache repository) allows it.
	if _, err := Open(dir, Options{Symlinks: FollowSymlinks, SymlinkRoot: filepath.Dir(dir)}); err != nil {
		t.Errorf("wider bound: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "link.bin"), Options{Symlinks: FollowSymlinks}); !errors.Is(err, ErrSymlink) {
		t.Errorf("model path itself a link: %v", err)
	}
}

func TestResolveIgnorePath(t *testing.T) {
	dir := tree(t, "ignore-me", "sub/x")
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(filepath.Dir(dir))
	tests := []struct{ in, want string }{
		{"ignore-me", "ignore-me"},
		{"./model/ignore-me", "ignore-me"}, // model_signing's CLI style
		{"model/sub", "sub"},
		{"not-there", "not-there"},
		{filepath.Join(dir, "sub", "x"), "sub/x"},
	}
	for _, tt := range tests {
		got, err := ResolveIgnorePath("model", tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := ResolveIgnorePath("model", "/etc/passwd"); err == nil {
		t.Error("absolute path outside the model accepted")
	}
}

func TestCompare(t *testing.T) {
	ordered := []string{".a", "a", "a/b", "a/b/c", "a-c", "a.b", "b", "é"}
	for i := range ordered {
		for j := range ordered {
			c := Compare(ordered[i], ordered[j])
			if (i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0) {
				t.Errorf("Compare(%q, %q) = %d", ordered[i], ordered[j], c)
			}
		}
	}
}
