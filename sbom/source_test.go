package sbom

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelseal/modelseal/pkg/digest"
)

// makeHFCache lays out a Hugging Face cache entry for the fixture folder:
// blobs named by sha256 (the safetensors file, as LFS) or git blob SHA-1
// (the small files), snapshots/<commit>/<file> links, and refs/main.
func makeHFCache(t *testing.T, withMain bool, commits ...string) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "models--modelseal-test--tiny-llama")
	entries, err := os.ReadDir(hfFixture)
	if err != nil {
		t.Fatal(err)
	}
	for i, commit := range commits {
		snap := filepath.Join(repo, "snapshots", commit)
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(hfFixture, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			var blob string
			if strings.HasSuffix(e.Name(), ".safetensors") {
				s := sha256.Sum256(data)
				blob = hex.EncodeToString(s[:])
			} else {
				h := sha1.New()
				fmt.Fprintf(h, "blob %d\x00", len(data))
				h.Write(data)
				blob = hex.EncodeToString(h.Sum(nil))
			}
			write(t, filepath.Join(repo, "blobs"), blob, string(data))
			if err := os.MkdirAll(snap, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..", "..", "blobs", blob), filepath.Join(snap, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		// Later snapshots are newer.
		mt := time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC)
		if err := os.Chtimes(snap, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if withMain {
		write(t, repo, "refs/main", commits[0]+"\n")
	}
	return repo
}

const (
	commitA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	commitB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// TestHuggingFaceCache resolves a cache entry (refs/main, newest snapshot,
// a snapshot folder) and checks the repository id, revision and blob checks.
func TestHuggingFaceCache(t *testing.T) {
	cases := []struct {
		name     string
		withMain bool
		path     func(repo string) string
		wantRev  string
	}{
		{"refs/main", true, func(r string) string { return r }, commitA},
		{"newest snapshot without refs/main", false, func(r string) string { return r }, commitB},
		{"snapshot folder", true, func(r string) string { return filepath.Join(r, "snapshots", commitB) }, commitB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := makeHFCache(t, c.withMain, commitA, commitB)
			res, _ := build(t, c.path(repo), OpenOptions{}, Input{}, Options{})
			m := res.BOM.Metadata.Component
			if m.Group != "modelseal-test" || m.Name != "tiny-llama" || m.Version != c.wantRev {
				t.Errorf("model %s/%s@%s, want revision %s", m.Group, m.Name, m.Version, c.wantRev)
			}
			if m.PackageURL != "pkg:huggingface/modelseal-test/tiny-llama@"+c.wantRev {
				t.Errorf("purl %s", m.PackageURL)
			}
			if (*m.ExternalReferences)[2].URL != "https://huggingface.co/modelseal-test/tiny-llama/tree/"+c.wantRev {
				t.Errorf("distribution %s", (*m.ExternalReferences)[2].URL)
			}
			for _, f := range []string{"model.safetensors", "config.json"} {
				if v, _ := prop(component(res.BOM, "file:"+f).Properties, "modelseal:huggingface:blob-verified"); v != "true" {
					t.Errorf("%s blob-verified = %q", f, v)
				}
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings %v", res.Warnings)
			}
		})
	}
	t.Run("tampered blob", func(t *testing.T) {
		repo := makeHFCache(t, true, commitA)
		cfg := filepath.Join(repo, "snapshots", commitA, "config.json")
		if err := os.WriteFile(cfg, []byte(`{"model_type":"evil"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		res, _ := build(t, repo, OpenOptions{}, Input{}, Options{})
		if v, _ := prop(component(res.BOM, "file:config.json").Properties, "modelseal:huggingface:blob-verified"); v != "false" {
			t.Errorf("tampered config.json blob-verified = %q", v)
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "config.json") {
			t.Errorf("warnings %v", res.Warnings)
		}
	})
	t.Run("unknown revision", func(t *testing.T) {
		repo := makeHFCache(t, true, commitA)
		if _, _, err := Open(repo, OpenOptions{Revision: "v9"}); err == nil {
			t.Error("unknown revision accepted")
		}
	})
}

// ociLayout writes an OCI image layout with a ModelPack manifest whose raw
// layers are the given files.
func ociLayout(t *testing.T, files map[string]string, filepathOf func(name string) string, mediaType string) string {
	t.Helper()
	dir := t.TempDir()
	blob := func(data []byte) map[string]any {
		s := sha256.Sum256(data)
		h := hex.EncodeToString(s[:])
		write(t, dir, "blobs/sha256/"+h, string(data))
		return map[string]any{"digest": "sha256:" + h, "size": len(data)}
	}
	var layers []any
	for _, name := range sortedKeys(files) {
		d := blob([]byte(files[name]))
		d["mediaType"] = mediaType
		d["annotations"] = map[string]string{annFilepath: filepathOf(name)}
		layers = append(layers, d)
	}
	cfg := map[string]any{
		"descriptor": map[string]any{"name": "tiny-llama", "version": "1.0", "licenses": []string{"Apache-2.0"}, "family": "llama"},
		"config":     map[string]any{"architecture": "transformer", "format": "safetensors", "paramSize": "27", "precision": "float32"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": []string{}},
	}
	cb, _ := json.Marshal(cfg)
	cd := blob(cb)
	cd["mediaType"] = modelPackConfig
	man := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"artifactType": "application/vnd.cncf.model.manifest.v1+json", "config": cd, "layers": layers}
	mb, _ := json.Marshal(man)
	md := blob(mb)
	md["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	md["annotations"] = map[string]string{annRefName: "1.0"}
	ib, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	write(t, dir, "index.json", string(ib))
	write(t, dir, ociLayoutFile, `{"imageLayoutVersion":"1.0.0"}`)
	return dir
}

func fixtureFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, _ := os.ReadDir(hfFixture)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(hfFixture, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

// TestOCILayout reads a ModelPack artifact from an OCI layout: files from
// the filepath annotations, digests that equal the layer digests, the
// ModelPack config as a fallback for the model card.
func TestOCILayout(t *testing.T) {
	files := fixtureFiles(t)
	files["data/train.jsonl"] = `{"text":"a"}` + "\n"
	dir := ociLayout(t, files, func(n string) string { return n }, "application/vnd.cncf.model.weight.v1.raw")
	res, _ := build(t, dir, OpenOptions{}, Input{}, Options{})
	bom := res.BOM
	if len(*bom.Components) < len(files) {
		t.Fatalf("%d components for %d files", len(*bom.Components), len(files))
	}
	st := component(bom, "file:model.safetensors")
	if v, _ := prop(st.Properties, "modelseal:oci:mediaType"); v != "application/vnd.cncf.model.weight.v1.raw" {
		t.Errorf("media type %q", v)
	}
	if v, _ := prop(st.Properties, PropFormat); v != "safetensors" {
		t.Errorf("format %q", v)
	}
	m := bom.Metadata.Component
	if m.Version != "1.0" || m.ModelCard.ModelParameters.Task != "text-generation" {
		t.Errorf("model version %q task %q", m.Version, m.ModelCard.ModelParameters.Task)
	}
	if v, _ := prop(m.Properties, "modelseal:source"); v != KindOCILayout {
		t.Errorf("source %q", v)
	}
	if v, _ := prop(m.Properties, "modelseal:oci:ref"); v != "1.0" {
		t.Errorf("ref %q", v)
	}

	bad := []struct {
		name     string
		filepath func(string) string
		media    string
		tamper   bool
	}{
		{"dot-dot path", func(n string) string { return "../" + n }, "application/vnd.cncf.model.weight.v1.raw", false},
		{"absolute path", func(n string) string { return "/etc/" + n }, "application/vnd.cncf.model.weight.v1.raw", false},
		{"tar layer", func(n string) string { return n }, "application/vnd.cncf.model.weight.v1.tar", false},
		{"duplicate path", func(string) string { return "same" }, "application/vnd.cncf.model.weight.v1.raw", false},
		{"blob content changed", func(n string) string { return n }, "application/vnd.cncf.model.weight.v1.raw", true},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			dir := ociLayout(t, map[string]string{"a.bin": "aaaa", "b.bin": "bbbb"}, b.filepath, b.media)
			src, set, err := Open(dir, OpenOptions{})
			if !b.tamper {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Same size, other content: only the digest tells.
			if err := os.WriteFile(set.Files[0].Path, []byte("zzzz"), 0o644); err != nil {
				t.Fatal(err)
			}
			dg, _ := digest.Compute(context.Background(), set, digest.Options{})
			if _, err := Build(context.Background(), Input{Set: set, Digests: dg, Source: src}, Options{}); err == nil || !strings.Contains(err.Error(), "layer digest") {
				t.Errorf("tampered blob: %v", err)
			}
		})
	}
}
