// Package hfcache understands the Hugging Face hub cache
// (~/.cache/huggingface/hub): it resolves a repository folder
// (models--org--name), a snapshot folder inside one, or an hf://org/name[@rev]
// reference to the snapshot a loader would read, offline, and checks every
// file of the snapshot against the name of the blob it links to: LFS blobs
// are named by the sha256 of their content, small git files by their git
// blob SHA-1. A match proves integrity against what the hub served, not
// authenticity: that is what signatures are for.
package hfcache

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/modelseal/modelseal/pkg/finding"
)

// Repo is one cached repository and the snapshot chosen in it.
type Repo struct {
	// Dir is the repository folder (…/hub/models--org--name).
	Dir string
	// Kind is "model", "dataset" or "space".
	Kind string
	// ID is the repository id, "org/name".
	ID string
	// Revision is the snapshot's commit hash.
	Revision string
	// Snapshot is the snapshot folder (Dir/snapshots/Revision).
	Snapshot string
}

var (
	kinds   = map[string]string{"models": "model", "datasets": "dataset", "spaces": "space"}
	commit  = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256N = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// CacheDir returns the hub cache folder as huggingface_hub computes it:
// HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub. getenv is os.Getenv in production.
func CacheDir(getenv func(string) string) string {
	if d := getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := getenv("HUGGINGFACE_HUB_CACHE"); d != "" {
		return d
	}
	if d := getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home := getenv("HOME")
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

// Resolve recognises arg as a cached repository: an hf://[models/|datasets/]org/name[@rev]
// reference (looked up in CacheDir), a repository folder, or a snapshot
// folder. It reports false when arg is none of these. A revision may be a
// branch or tag (looked up in refs/) or a commit hash; without one, refs/main
// is used, or the newest snapshot.
func Resolve(arg string, getenv func(string) string) (*Repo, bool, error) {
	if rest, ok := strings.CutPrefix(arg, "hf://"); ok {
		kind := "models"
		for k := range kinds {
			if r, ok := strings.CutPrefix(rest, k+"/"); ok {
				kind, rest = k, r
			}
		}
		id, rev, _ := strings.Cut(rest, "@")
		parts := strings.Split(id, "/")
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" || strings.Contains(id, "..") {
			return nil, true, fmt.Errorf("%s: want hf://org/name[@revision]", arg)
		}
		dir := filepath.Join(CacheDir(getenv), kind+"--"+parts[0]+"--"+parts[1])
		if _, err := os.Stat(dir); err != nil {
			return nil, true, fmt.Errorf("%s is not in the local Hugging Face cache (%s): %w", arg, dir, err)
		}
		r, err := Open(dir, rev)
		return r, true, err
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return nil, false, nil
	}
	if isRepoDir(abs) {
		r, err := Open(abs, "")
		return r, true, err
	}
	// A snapshot folder: <repo>/snapshots/<commit>.
	if parent := filepath.Dir(abs); filepath.Base(parent) == "snapshots" && isRepoDir(filepath.Dir(parent)) {
		r, err := Open(filepath.Dir(parent), filepath.Base(abs))
		return r, true, err
	}
	return nil, false, nil
}

func isRepoDir(dir string) bool {
	base := filepath.Base(dir)
	prefix, _, ok := strings.Cut(base, "--")
	if _, known := kinds[prefix]; !ok || !known {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "snapshots"))
	return err == nil && st.IsDir()
}

// Open opens the repository folder dir at a revision: a ref under refs/ (a
// branch or tag), a commit hash, or "" for refs/main, else the newest
// snapshot.
func Open(dir, rev string) (*Repo, error) {
	base := filepath.Base(dir)
	prefix, id, _ := strings.Cut(base, "--")
	r := &Repo{Dir: dir, Kind: kinds[prefix], ID: strings.Replace(id, "--", "/", 1)}
	switch {
	case commit.MatchString(rev):
		r.Revision = rev
	case rev != "":
		if strings.Contains(rev, "..") || filepath.IsAbs(rev) || strings.Contains(rev, `\`) {
			return nil, fmt.Errorf("%s: bad revision %q", dir, rev)
		}
		b, err := os.ReadFile(filepath.Join(dir, "refs", filepath.FromSlash(rev)))
		if err != nil {
			return nil, fmt.Errorf("%s: revision %q is not cached: %w", dir, rev, err)
		}
		r.Revision = strings.TrimSpace(string(b))
	default:
		if b, err := os.ReadFile(filepath.Join(dir, "refs", "main")); err == nil {
			r.Revision = strings.TrimSpace(string(b))
			break
		}
		// No refs/main: the newest snapshot (modification time, then name).
		entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		var newest os.FileInfo
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || !fi.IsDir() {
				continue
			}
			if newest == nil || fi.ModTime().After(newest.ModTime()) ||
				(fi.ModTime().Equal(newest.ModTime()) && fi.Name() > newest.Name()) {
				newest = fi
			}
		}
		if newest == nil {
			return nil, fmt.Errorf("%s: no snapshots", dir)
		}
		r.Revision = newest.Name()
	}
	if !commit.MatchString(r.Revision) {
		return nil, fmt.Errorf("%s: revision %q is not a commit hash", dir, r.Revision)
	}
	r.Snapshot = filepath.Join(dir, "snapshots", r.Revision)
	if st, err := os.Stat(r.Snapshot); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: snapshot %s is not cached", dir, r.Revision)
	}
	return r, nil
}

// Check verifies every file of the snapshot against the blob name it links
// to, using up to workers goroutines, and returns a finding per problem:
// hf/blob-mismatch (content differs from its name), hf/not-a-blob-link (a
// snapshot entry that is not a link into the repository's blobs). display
// maps a snapshot-relative name to the path used in findings.
func (r *Repo) Check(ctx context.Context, workers int, display func(rel string) string) ([]finding.Finding, error) {
	type job struct{ rel, blob string }
	var jobs []job
	var out []finding.Finding
	blobs := filepath.Join(r.Dir, "blobs")
	err := filepath.WalkDir(r.Snapshot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(r.Snapshot, p)
		rel = filepath.ToSlash(rel)
		loc := finding.Location{Path: display(rel), Offset: -1}
		if d.Type()&fs.ModeSymlink == 0 {
			out = append(out, finding.Finding{Rule: "hf/not-a-blob-link", Severity: finding.Medium, Location: loc,
				Message: "snapshot file is not a link to a cached blob: it did not come from the hub download and cannot be checked"})
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		target = filepath.Clean(target)
		if filepath.Dir(target) != blobs {
			out = append(out, finding.Finding{Rule: "hf/not-a-blob-link", Severity: finding.High, Location: loc,
				Message: "snapshot file links outside the repository's blobs folder, to " + target})
			return nil
		}
		jobs = append(jobs, job{rel: rel, blob: target})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Snapshot, err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan job)
	var firstErr error
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				f, err := checkBlob(ctx, j.blob)
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = err
				case f != "":
					out = append(out, finding.Finding{Rule: "hf/blob-mismatch", Severity: finding.High,
						Location: finding.Location{Path: display(j.rel), Offset: -1}, Message: f,
						Evidence: map[string]string{"blob": filepath.Base(j.blob)}})
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Location.Path < out[j].Location.Path })
	return out, nil
}

// checkBlob hashes a blob the way its name says and returns a message when
// the content does not match.
func checkBlob(ctx context.Context, blob string) (string, error) {
	name := filepath.Base(blob)
	f, err := os.Open(blob)
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", name, err)
	}
	var h hash.Hash
	kind := ""
	switch {
	case sha256N.MatchString(name):
		h, kind = sha256.New(), "sha256 (LFS)"
	case commit.MatchString(name):
		h, kind = sha1.New(), "git blob SHA-1"
		io.WriteString(h, "blob "+strconv.FormatInt(st.Size(), 10)+"\x00")
	default:
		return "blob name " + name + " is neither a sha256 nor a git blob id; its content cannot be checked", nil
	}
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: f}); err != nil {
		return "", fmt.Errorf("blob %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != name {
		return fmt.Sprintf("content does not match its cached blob name: %s is %s, the blob is named %s", kind, got, name), nil
	}
	return "", nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
