package hfcache

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const rev = "0123456789abcdef0123456789abcdef01234567"

// makeCache lays out a cache entry exactly as huggingface_hub does:
// blobs named by content hash, refs/main, and a snapshot of relative links.
func makeCache(t *testing.T, files map[string]string, lfs map[string]bool) (hub, repo string) {
	t.Helper()
	hub = t.TempDir()
	repo = filepath.Join(hub, "models--acme--tiny")
	snap := filepath.Join(repo, "snapshots", rev)
	for _, d := range []string{filepath.Join(repo, "blobs"), filepath.Join(repo, "refs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(rev), 0o644)
	for name, content := range files {
		var blob string
		if lfs[name] {
			s := sha256.Sum256([]byte(content))
			blob = hex.EncodeToString(s[:])
		} else {
			h := sha1.New()
			h.Write([]byte("blob " + strconv.Itoa(len(content)) + "\x00" + content))
			blob = hex.EncodeToString(h.Sum(nil))
		}
		os.WriteFile(filepath.Join(repo, "blobs", blob), []byte(content), 0o644)
		link := filepath.Join(snap, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(link), 0o755)
		rel, _ := filepath.Rel(filepath.Dir(link), filepath.Join(repo, "blobs", blob))
		if err := os.Symlink(rel, link); err != nil {
			t.Fatal(err)
		}
	}
	return hub, repo
}

func TestResolve(t *testing.T) {
	hub, repo := makeCache(t, map[string]string{"config.json": "{}"}, nil)
	env := func(k string) string {
		if k == "HF_HUB_CACHE" {
			return hub
		}
		return ""
	}
	snap := filepath.Join(repo, "snapshots", rev)
	tests := []struct {
		arg     string
		ok      bool
		wantErr bool
	}{
		{"hf://acme/tiny", true, false},
		{"hf://models/acme/tiny@main", true, false},
		{"hf://acme/tiny@" + rev, true, false},
		{"hf://acme/tiny@nope", true, true},
		{"hf://acme/other", true, true},
		{"hf://acme", true, true},
		{repo, true, false},
		{snap, true, false},
		{t.TempDir(), false, false},
	}
	for _, tt := range tests {
		r, ok, err := Resolve(tt.arg, env)
		if ok != tt.ok || (err != nil) != tt.wantErr {
			t.Errorf("%s: ok=%v err=%v", tt.arg, ok, err)
			continue
		}
		if ok && err == nil && (r.ID != "acme/tiny" || r.Revision != rev || r.Snapshot != snap || r.Kind != "model") {
			t.Errorf("%s: %+v", tt.arg, r)
		}
	}
}

func TestCheck(t *testing.T) {
	files := map[string]string{"config.json": `{"model_type":"tiny"}`, "model.safetensors": "weights", "sub/tok.json": "{}"}
	_, repo := makeCache(t, files, map[string]bool{"model.safetensors": true})
	r, _, err := Resolve(repo, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	id := func(rel string) string { return rel }
	fs, err := r.Check(context.Background(), 2, id)
	if err != nil || len(fs) != 0 {
		t.Fatalf("clean cache: %v %v", fs, err)
	}
	// Tamper with the LFS blob and the git blob, and drop a plain file in.
	entries, _ := os.ReadDir(filepath.Join(repo, "blobs"))
	for _, e := range entries {
		p := filepath.Join(repo, "blobs", e.Name())
		b, _ := os.ReadFile(p)
		if string(b) == "weights" || string(b) == "{}" {
			os.WriteFile(p, append(b, 'X'), 0o644)
		}
	}
	os.WriteFile(filepath.Join(r.Snapshot, "extra.py"), []byte("print()"), 0o644)
	fs, err = r.Check(context.Background(), 2, id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fs {
		got[f.Location.Path] = f.Rule
	}
	want := map[string]string{"model.safetensors": "hf/blob-mismatch", "sub/tok.json": "hf/blob-mismatch", "extra.py": "hf/not-a-blob-link"}
	if len(got) != len(want) {
		t.Fatalf("findings %v", fs)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q (%v)", k, got[k], v, fs)
		}
	}
}

// TestNewestSnapshot: without refs/main the newest snapshot is used.
func TestNewestSnapshot(t *testing.T) {
	_, repo := makeCache(t, map[string]string{"config.json": "{}"}, nil)
	os.Remove(filepath.Join(repo, "refs", "main"))
	const newer = "fedcba9876543210fedcba9876543210fedcba98"
	if err := os.Mkdir(filepath.Join(repo, "snapshots", newer), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(repo, "snapshots", rev)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	r, err := Open(repo, "")
	if err != nil || r.Revision != newer {
		t.Fatalf("Open = %+v, %v; want the newest snapshot %s", r, err, newer)
	}
}
