// Package modelfs lists the files of a model: one listing, with relative
// '/'-separated names, sizes and a way to open each file as an io.ReaderAt,
// shared by hashing, signing, verification, the BOM and OCI packaging.
//
// A model is either a folder (every regular file below it, dotfiles
// included, empty folders absent) or a single file. The listing applies the
// ignore rules of the OpenSSF Model Signing (OMS) format: the default git
// paths at the top level, user paths relative to the model (a path ignores
// itself and, when it is a folder, everything below it), and a symbolic link
// policy (refuse by default; when following, never leave the allowed root).
package modelfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultIgnores are the paths OMS signers ignore at the top level of a model
// folder unless told otherwise (model_signing's ignore_git_paths).
var DefaultIgnores = []string{".git", ".gitattributes", ".github", ".gitignore"}

// ErrSymlink reports a symbolic link the policy does not allow.
var ErrSymlink = errors.New("symbolic link")

// SymlinkPolicy says what to do with symbolic links found in a model.
type SymlinkPolicy int

const (
	// RefuseSymlinks fails the listing on any symbolic link (the default,
	// model_signing's allow_symlinks=false).
	RefuseSymlinks SymlinkPolicy = iota
	// FollowSymlinks lists a link to a regular file under the link's own
	// name, with the target's content. Targets must resolve inside
	// Options.SymlinkRoot (the model itself by default); links to folders
	// are refused.
	FollowSymlinks
)

// ReadAtCloser is an open model file.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

// File is one regular file of a model.
type File struct {
	// Name is the path relative to the model, '/'-separated. For a
	// single-file model it is the file's base name.
	Name string
	// Size is the size in bytes when the listing was made.
	Size int64
	// Path is the file's location on the local file system (the resolved
	// target for a followed link). Empty for files that live elsewhere.
	Path string
	// Opener, when not nil, opens the content instead of Path; other
	// sources (an OCI layout, an archive) set it.
	Opener func() (ReadAtCloser, error)
}

// Open opens the file's content for reading.
func (f File) Open() (ReadAtCloser, error) {
	if f.Opener != nil {
		return f.Opener()
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", f.Name, err)
	}
	return fh, nil
}

// Set is the listing of a model.
type Set struct {
	// Root is the path the listing was made from (folder or file).
	Root string
	// Name is the model's name: the base name of Root (OMS subject name).
	Name string
	// SingleFile is true when the model is one file rather than a folder.
	SingleFile bool
	// Files are sorted with Less (the order model_signing uses).
	Files []File
	// Ignored are the normalised ignore paths that were applied, relative
	// to the model, sorted (what an OMS predicate records).
	Ignored []string
}

// Options controls a listing.
type Options struct {
	// Ignore lists paths relative to the model ('/' or OS separators; a
	// leading "./" is fine). Absolute paths and paths with ".." are refused;
	// use ResolveIgnorePath to turn a user's path into this form.
	Ignore []string
	// NoDefaultIgnores keeps the git paths of DefaultIgnores in the listing.
	NoDefaultIgnores bool
	// Symlinks is the symbolic link policy.
	Symlinks SymlinkPolicy
	// SymlinkRoot bounds followed links; empty means the model root. A
	// Hugging Face cache snapshot, whose files link to ../../blobs, sets it
	// to the repository folder.
	SymlinkRoot string
}

// Get returns the file called name, if it is listed.
func (s *Set) Get(name string) (File, bool) {
	i, ok := slices.BinarySearchFunc(s.Files, name, func(f File, n string) int { return Compare(f.Name, n) })
	if !ok {
		return File{}, false
	}
	return s.Files[i], true
}

// TotalSize is the sum of the file sizes.
func (s *Set) TotalSize() int64 {
	var n int64
	for _, f := range s.Files {
		n += f.Size
	}
	return n
}

// Compare orders names the way model_signing does (Python PurePosixPath
// order): component by component, each component by code point. It differs
// from plain string order only when a component is a prefix of another
// followed by a character below '/' ("a/b" < "a-c").
func Compare(a, b string) int {
	for {
		ia := strings.IndexByte(a, '/')
		ib := strings.IndexByte(b, '/')
		ca, cb := a, b
		if ia >= 0 {
			ca = a[:ia]
		}
		if ib >= 0 {
			cb = b[:ib]
		}
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		switch {
		case ia < 0 && ib < 0:
			return 0
		case ia < 0:
			return -1
		case ib < 0:
			return 1
		}
		a, b = a[ia+1:], b[ib+1:]
	}
}

// CleanName normalises a relative model path: '/' separators, no "./", no
// trailing slash. It refuses empty, absolute and ".." paths.
func CleanName(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	s := filepath.ToSlash(p)
	if path.IsAbs(s) || filepath.IsAbs(p) || filepath.VolumeName(p) != "" {
		return "", fmt.Errorf("path %q is absolute, want a path relative to the model", p)
	}
	s = path.Clean(s)
	if s == ".." || strings.HasPrefix(s, "../") {
		return "", fmt.Errorf("path %q leaves the model", p)
	}
	return s, nil
}

// ResolveIgnorePath turns a path given by a user into a path relative to the
// model at root. A path that names something inside the model when read
// from the working directory (as model_signing's CLI reads it, for example
// "./model/ignore-me") is made relative to the model; any other relative
// path is taken as already relative to the model.
func ResolveIgnorePath(root, p string) (string, error) {
	if p == "" {
		return "", errors.New("empty ignore path")
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("ignore path %q: %w", p, err)
	}
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(absRoot, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "", fmt.Errorf("ignore path %q is outside the model %s", p, root)
		}
		return CleanName(rel)
	}
	if _, err := os.Lstat(filepath.Join(absRoot, p)); err != nil {
		// Not a model-relative path that exists: try it from the working directory.
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Lstat(abs); err == nil {
				if rel, err := filepath.Rel(absRoot, abs); err == nil && rel != "." && rel != ".." &&
					!strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
					return CleanName(rel)
				}
			}
		}
	}
	return CleanName(p)
}

// ignored reports whether name is an ignore path or lies below one.
func ignored(name string, ignores []string) bool {
	for _, ig := range ignores {
		if name == ig || strings.HasPrefix(name, ig+"/") {
			return true
		}
	}
	return false
}

// Open lists the model at root (a folder or a file).
func Open(root string, opts Options) (*Set, error) {
	var ignores []string
	if !opts.NoDefaultIgnores {
		ignores = append(ignores, DefaultIgnores...)
	}
	for _, p := range opts.Ignore {
		c, err := CleanName(p)
		if err != nil {
			return nil, fmt.Errorf("ignore path: %w", err)
		}
		if c == "." {
			return nil, fmt.Errorf("ignore path %q would ignore the whole model", p)
		}
		ignores = append(ignores, c)
	}
	slices.Sort(ignores)
	ignores = slices.Compact(ignores)

	info, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", root, err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", root, err)
	}
	set := &Set{Root: root, Name: filepath.Base(abs), Ignored: ignores}

	if info.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("model %s: %w: the model path itself is a link; pass its target", root, ErrSymlink)
	}
	if info.Mode().IsRegular() {
		set.SingleFile = true
		set.Files = []File{{Name: set.Name, Size: info.Size(), Path: root}}
		return set, nil
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("model %s: not a regular file or folder (%s)", root, info.Mode().Type())
	}

	var realBound string
	if opts.Symlinks == FollowSymlinks {
		bound := opts.SymlinkRoot
		if bound == "" {
			bound = root
		}
		if realBound, err = filepath.EvalSymlinks(bound); err != nil {
			return nil, fmt.Errorf("symlink root %s: %w", bound, err)
		}
		if realBound, err = filepath.Abs(realBound); err != nil {
			return nil, fmt.Errorf("symlink root %s: %w", bound, err)
		}
	}

	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("listing %s: %w", p, err)
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p, err)
		}
		name := filepath.ToSlash(rel)
		if ignored(name, ignores) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		mode := d.Type()
		switch {
		case mode.IsDir():
			return nil
		case mode&fs.ModeSymlink != 0:
			if opts.Symlinks != FollowSymlinks {
				return fmt.Errorf("%s: %w (symbolic links are refused unless allowed)", name, ErrSymlink)
			}
			f, err := followLink(p, name, realBound)
			if err != nil {
				return err
			}
			set.Files = append(set.Files, f)
			return nil
		case mode.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("listing %s: %w", name, err)
			}
			set.Files = append(set.Files, File{Name: name, Size: fi.Size(), Path: p})
			return nil
		default:
			return fmt.Errorf("%s: not a regular file (%s)", name, mode)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(set.Files, func(a, b File) int { return Compare(a.Name, b.Name) })
	return set, nil
}

// followLink resolves a link and checks that its target is a regular file
// inside bound.
func followLink(p, name, bound string) (File, error) {
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w: %w", name, ErrSymlink, err)
	}
	target, err = filepath.Abs(target)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	rel, err := filepath.Rel(bound, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return File{}, fmt.Errorf("%s: %w to %s escapes %s", name, ErrSymlink, target, bound)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return File{}, fmt.Errorf("%s: %w to %s: only links to regular files are followed", name, ErrSymlink, fi.Mode().Type())
	}
	return File{Name: name, Size: fi.Size(), Path: target}, nil
}
