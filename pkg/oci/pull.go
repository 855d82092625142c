package oci

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"

	"github.com/modelseal/modelseal/pkg/verify"
)

// Limits of tar layer unpacking.
const (
	// MaxTarEntries bounds the entries of all tar layers of a pull.
	MaxTarEntries = 1_000_000
	// MaxExpansion bounds the unpacked bytes of a compressed tar layer as a
	// multiple of its compressed size (decompression bombs), above 1 GiB.
	MaxExpansion = 200
)

// ErrDigest reports a blob whose content does not match its digest.
var ErrDigest = errors.New("blob does not match its digest")

// PullOptions configures Pull.
type PullOptions struct {
	// Verify, when set, authenticates the artifact before any blob is
	// fetched and checks every file after download. Nil pulls without
	// verification (the caller must have asked for it explicitly).
	Verify *VerifyOptions
	// Concurrency is the number of blobs downloaded at once (default 3).
	Concurrency int
	// Check, when set, runs on the downloaded model (a temporary folder)
	// after verification and before the move; an error aborts the pull
	// (a scan, say).
	Check func(ctx context.Context, dir string) error
	// Progress, when set, is called after each blob with the number done,
	// the total and the blob's size. Calls are serialised.
	Progress func(done, total int, size int64)
}

// Pulled describes a completed pull.
type Pulled struct {
	// Artifact is the model manifest.
	Artifact *Artifact
	// Verified is set when the pull was verified.
	Verified *Verified
	// Files is the number of files written, Size their bytes.
	Files int
	Size  int64
}

// Pull downloads the model at the reference into dir, which must not exist
// or be empty. With opts.Verify, the signature is checked first (from the
// manifest, before any blob is fetched); blobs go to a temporary folder
// next to dir, each is checked against its digest, tar layers are unpacked
// with every name checked (no absolute paths, "..", links, devices or
// duplicates), files are hashed again when the signature is not over the
// layer digests, and only a fully verified model is renamed into dir. On
// any error nothing is left in dir.
func Pull(ctx context.Context, repo *Repo, dir string, opts PullOptions) (*Pulled, error) {
	if err := checkDest(dir); err != nil {
		return nil, repo.errf("%v", err)
	}
	a, err := Resolve(ctx, repo)
	if err != nil {
		return nil, err
	}
	p := &Pulled{Artifact: a}
	skip := map[string]bool{}
	if opts.Verify != nil {
		v, err := VerifyArtifact(ctx, repo, a, *opts.Verify)
		if err != nil {
			return nil, err
		}
		p.Verified = v
		skip = v.Skipped
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, repo.errf("%v", err)
	}
	parent := filepath.Dir(abs)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, repo.errf("%v", err)
	}
	tmp, err := os.MkdirTemp(parent, ".modelseal-pull-*")
	if err != nil {
		return nil, repo.errf("%v", err)
	}
	moved := false
	defer func() {
		if !moved {
			os.RemoveAll(tmp)
		}
	}()
	files, size, err := download(ctx, repo, a, tmp, skip, opts)
	if err != nil {
		return nil, err
	}
	p.Files, p.Size = files, size
	if v := p.Verified; v != nil && v.NeedsContent {
		vo := verify.Options{IgnorePaths: opts.Verify.IgnorePaths, IgnoreUnsigned: opts.Verify.IgnoreUnsigned}
		if _, err := verify.Compare(ctx, tmp, v.Signed, vo); err != nil {
			return nil, repo.errf("%w", err)
		}
	}
	if opts.Check != nil {
		if err := opts.Check(ctx, tmp); err != nil {
			return nil, repo.errf("%w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, repo.errf("%v", err)
	}
	// An empty destination folder is replaced (os.Remove fails on a folder
	// that is no longer empty).
	if err := os.Remove(abs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, repo.errf("destination %s: %v", dir, err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		return nil, repo.errf("moving the verified model into %s: %v", dir, err)
	}
	moved = true
	return p, nil
}

// checkDest accepts a folder that does not exist or is empty.
func checkDest(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("destination %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("destination %s is not empty", dir)
	}
	return nil
}

// download writes every layer into dir (a fresh folder) and checks each
// blob against its digest.
func download(ctx context.Context, repo *Repo, a *Artifact, dir string, skip map[string]bool, opts PullOptions) (int, int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, 0, repo.errf("%v", err)
	}
	defer root.Close()
	var (
		mu      sync.Mutex
		files   int
		size    int64
		done    int
		entries int
		paths   = newPathSet()
	)
	var todo []Layer
	for _, l := range a.Layers {
		if l.Packing == Raw && skip[l.Path] {
			continue
		}
		todo = append(todo, l)
	}
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 3
	}
	// addFile registers a file written by a tar layer.
	addFile := func(name string, n int64) error {
		mu.Lock()
		defer mu.Unlock()
		entries++
		if entries > MaxTarEntries {
			return fmt.Errorf("more than %d tar entries", MaxTarEntries)
		}
		if err := paths.add(name); err != nil {
			return err
		}
		files++
		size += n
		return nil
	}
	// Raw paths first, so a tar entry cannot take a raw file's name.
	for _, l := range todo {
		if l.Packing == Raw {
			if err := paths.add(l.Path); err != nil {
				return 0, 0, repo.errf("%w: %v", ErrInvalid, err)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for _, l := range todo {
		g.Go(func() error {
			var err error
			if l.Packing == Raw {
				err = fetchRaw(gctx, repo, root, l)
				if err == nil {
					mu.Lock()
					files++
					size += l.Descriptor.Size
					mu.Unlock()
				}
			} else {
				err = fetchTar(gctx, repo, root, l, skip, addFile)
			}
			if err != nil {
				return err
			}
			mu.Lock()
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(todo), l.Descriptor.Size)
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, err
	}
	return files, size, nil
}

func layerName(l Layer) string {
	if l.Path != "" {
		return l.Path
	}
	return l.Descriptor.Digest.String()
}

// openBlob fetches a layer through a reader that checks its size and digest.
func openBlob(ctx context.Context, repo *Repo, l Layer) (*content.VerifyReader, io.Closer, error) {
	rc, err := repo.Target.Fetch(ctx, l.Descriptor)
	if err != nil {
		return nil, nil, repo.errf("layer %s (%s): %v", layerName(l), l.Descriptor.Digest, err)
	}
	return content.NewVerifyReader(rc, l.Descriptor), rc, nil
}

func blobErr(repo *Repo, l Layer, err error) error {
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) || errors.Is(err, io.ErrUnexpectedEOF) {
		return repo.errf("layer %s: %w: %v", layerName(l), ErrDigest, err)
	}
	return repo.errf("layer %s: %v", layerName(l), err)
}

func fetchRaw(ctx context.Context, repo *Repo, root *os.Root, l Layer) error {
	vr, closer, err := openBlob(ctx, repo, l)
	if err != nil {
		return err
	}
	defer closer.Close()
	if d := path.Dir(l.Path); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return repo.errf("layer %s: %v", l.Path, err)
		}
	}
	f, err := root.OpenFile(l.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return repo.errf("layer %s: %v", l.Path, err)
	}
	_, err = io.Copy(f, ctxReader{ctx, vr})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = vr.Verify()
	}
	if err != nil {
		return blobErr(repo, l, err)
	}
	return nil
}

// ctxReader stops a copy when the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// fetchTar unpacks a tar layer safely: regular files and folders only,
// every name checked, bounded expansion; then the whole blob's digest is
// checked (everything written is discarded with the temporary folder if it
// does not match).
func fetchTar(ctx context.Context, repo *Repo, root *os.Root, l Layer, skip map[string]bool, addFile func(string, int64) error) error {
	vr, closer, err := openBlob(ctx, repo, l)
	if err != nil {
		return err
	}
	defer closer.Close()
	var r io.Reader = ctxReader{ctx, vr}
	limit := l.Descriptor.Size
	switch l.Packing {
	case TarGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return blobErr(repo, l, err)
		}
		defer zr.Close()
		r = zr
		limit = max(l.Descriptor.Size*MaxExpansion, 1<<30)
	case TarZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return blobErr(repo, l, err)
		}
		defer zr.Close()
		r = zr
		limit = max(l.Descriptor.Size*MaxExpansion, 1<<30)
	}
	if err := untar(root, r, limit, skip, addFile); err != nil {
		return repo.errf("layer %s (%s): %w", layerName(l), l.Descriptor.Digest, err)
	}
	// Drain what follows the archive so that the digest covers it all.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return blobErr(repo, l, err)
	}
	if err := vr.Verify(); err != nil {
		return blobErr(repo, l, err)
	}
	return nil
}

// untar writes the regular files and folders of a tar stream under root.
// Links, devices and other special entries are refused, as are unsafe and
// duplicate names. limit bounds the bytes written.
func untar(root *os.Root, r io.Reader, limit int64, skip map[string]bool, addFile func(string, int64) error) error {
	tr := tar.NewReader(r)
	var written int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %v", ErrInvalid, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeDir:
			name = strings.TrimSuffix(name, "/")
			if name == "" || name == "." {
				continue
			}
			if err := CheckPath(name); err != nil {
				return fmt.Errorf("%w: tar entry: %v", ErrInvalid, err)
			}
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("tar entry %q: %v", name, err)
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := CheckPath(name); err != nil {
				return fmt.Errorf("%w: tar entry: %v", ErrInvalid, err)
			}
			if hdr.Size < 0 || hdr.Size > limit-written {
				return fmt.Errorf("%w: tar entry %q of %d bytes exceeds the %d byte expansion limit", ErrInvalid, name, hdr.Size, limit)
			}
			if skip[name] {
				continue
			}
			if err := addFile(name, hdr.Size); err != nil {
				return fmt.Errorf("%w: tar entry: %v", ErrInvalid, err)
			}
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("tar entry %q: %v", name, err)
				}
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("tar entry %q: %v", name, err)
			}
			n, err := io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			written += n
			if err != nil {
				return fmt.Errorf("tar entry %q: %v", name, err)
			}
		default:
			return fmt.Errorf("%w: tar entry %q is a %s; only regular files and folders are unpacked", ErrInvalid, hdr.Name, typeName(hdr.Typeflag))
		}
	}
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("entry of type %q", t)
}
