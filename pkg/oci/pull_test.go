package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/modelseal/modelseal/pkg/oci/ocitest"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/verify"
)

func TestUnsafeFilePaths(t *testing.T) {
	ctx := context.Background()
	host := ocitest.Olareg(t, nil)
	cfg := []byte(`{}`)
	cfgDesc := blobDesc(MediaTypeModelConfig, cfg, "")
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{"dot-dot", []string{"../evil"}, "leaves the model"},
		{"dot-dot inside", []string{"a/../../evil"}, "leaves the model"},
		{"absolute", []string{"/etc/cron.d/evil"}, "absolute"},
		{"backslash", []string{`..\evil`}, "backslash"},
		{"drive letter", []string{"C:evil"}, "drive letter"},
		{"duplicate", []string{"model.bin", "model.bin"}, "appears twice"},
		{"case duplicate", []string{"Model.bin", "model.bin"}, "differ only in case"},
		{"file and folder", []string{"a", "a/b"}, "below the file"},
		{"not clean", []string{"a//b"}, "not clean"},
		{"dot", []string{"./a"}, "not clean"},
		{"control character", []string{"a\nb"}, "control character"},
		{"empty", []string{""}, "without the org.cncf.model.filepath"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var layers []ocispec.Descriptor
			var blobs [][]byte
			for j, p := range tc.paths {
				data := []byte{byte(i), byte(j)}
				layers = append(layers, blobDesc("application/vnd.cncf.model.weight.v1.raw", data, p))
				blobs = append(blobs, data)
			}
			tag := "t" + string(rune('a'+i))
			repo := openRef(t, host+"/models/unsafe:"+tag)
			pushManifest(t, repo, ArtifactTypeModelPack, cfgDesc, cfg, layers, blobs, tag)
			dest := filepath.Join(t.TempDir(), "out")
			_, err := Pull(ctx, repo, dest, PullOptions{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v, want ErrInvalid with %q", err, tc.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatal("pull wrote the destination")
			}
		})
	}
}

func TestCorruptBlob(t *testing.T) {
	ctx := context.Background()
	priv, pub := vectorKey(t)
	model := writeModel(t, testFiles)
	weights := digestOf(testFiles["model.safetensors"])
	host := ocitest.Olareg(t, ocitest.CorruptBlob(weights))
	repo := openRef(t, host+"/models/tiny:v1")
	pushSigned(t, repo, model, priv)
	// Verification from the manifest passes: the registry's lie is only in
	// the blob.
	if _, err := Verify(ctx, repo, VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	_, err := Pull(ctx, repo, dest, PullOptions{Verify: &VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}}})
	if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("pull: %v, want ErrDigest naming the file", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatal("pull wrote the destination")
	}
	entries, _ := os.ReadDir(filepath.Dir(dest))
	if len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func digestOf(s string) string {
	return blobDesc("", []byte(s), "").Digest.String()
}

func TestPullDestination(t *testing.T) {
	ctx := context.Background()
	model := writeModel(t, testFiles)
	repo := openRef(t, "oci:"+filepath.Join(t.TempDir(), "l")+":v1")
	pushSigned(t, repo, model, nil)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	if _, err := Pull(ctx, repo, full, PullOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("pull into a non-empty folder: %v", err)
	}
	empty := t.TempDir()
	if _, err := Pull(ctx, repo, empty, PullOptions{}); err != nil {
		t.Fatalf("pull into an empty folder: %v", err)
	}
	if got := readTree(t, empty); len(got) != len(withoutGit(testFiles)) {
		t.Fatalf("pulled %d files", len(got))
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTar(t testing.TB, gz bool, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

// TestOtherFormats pulls KitOps, older ModelPack and Docker Model Runner
// artifacts, and verifies them against a signature of the model folder.
func TestOtherFormats(t *testing.T) {
	ctx := context.Background()
	priv, pub := vectorKey(t)
	files := map[string]string{"model.gguf": "GGUF weights", "LICENSE": "MIT", "src/train.py": "print(1)"}
	model := writeModel(t, files)
	h, err := oms.HashModel(ctx, model, oms.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host := ocitest.Olareg(t, nil)
	raw := func(mt, name, ann string) (ocispec.Descriptor, []byte) {
		d := blobDesc(mt, []byte(files[name]), "")
		if ann != "" {
			d.Annotations = map[string]string{ann: name}
		}
		return d, []byte(files[name])
	}
	tests := []struct {
		name    string
		build   func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte)
		format  Format
		wantErr string
	}{{
		name:   "kitops tar+gzip",
		format: FormatKitOps,
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{"manifestVersion":"1.0.0","package":{"name":"tiny"},"model":{"path":"model.gguf"}}`)
			m := makeTar(t, true, []tarEntry{{name: "model.gguf", body: files["model.gguf"]}})
			d := makeTar(t, false, []tarEntry{{name: "./LICENSE", body: files["LICENSE"]}})
			c := makeTar(t, true, []tarEntry{{name: "src/", typ: tar.TypeDir}, {name: "src/train.py", body: files["src/train.py"]}})
			return "", blobDesc(MediaTypeKitConfig, cfg, ""), cfg,
				[]ocispec.Descriptor{blobDesc(kitLayerPrefix+"model.v1.tar+gzip", m, ""), blobDesc(kitLayerPrefix+"docs.v1.tar", d, ""), blobDesc(kitLayerPrefix+"code.v1.tar+gzip", c, "")},
				[][]byte{m, d, c}
		},
	}, {
		name:   "modelpack cnai raw",
		format: FormatCNAI,
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{}`)
			var ls []ocispec.Descriptor
			var bs [][]byte
			for _, n := range []string{"model.gguf", "LICENSE", "src/train.py"} {
				d, b := raw("application/vnd.cnai.model.weight.v1.raw", n, AnnotationCNAIFilepath)
				ls, bs = append(ls, d), append(bs, b)
			}
			return ArtifactTypeCNAI, blobDesc(MediaTypeCNAIConfig, cfg, ""), cfg, ls, bs
		},
	}, {
		name:   "docker model runner",
		format: FormatDockerAI,
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{"config":{"format":"gguf"}}`)
			g, gb := raw(dockerAIPrefix+"gguf.v3", "model.gguf", "")
			l, lb := raw(dockerAIPrefix+"license", "LICENSE", "")
			c, cb := raw(dockerAIPrefix+"code", "src/train.py", ocispec.AnnotationTitle)
			return "", blobDesc(MediaTypeDockerAIConfigV01, cfg, ""), cfg, []ocispec.Descriptor{g, l, c}, [][]byte{gb, lb, cb}
		},
	}, {
		name:    "kitops tar with a symlink",
		wantErr: "symbolic link",
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{}`)
			m := makeTar(t, true, []tarEntry{{name: "model.gguf", typ: tar.TypeSymlink, link: "/etc/passwd"}})
			return "", blobDesc(MediaTypeKitConfig, cfg, ""), cfg, []ocispec.Descriptor{blobDesc(kitLayerPrefix+"model.v1.tar+gzip", m, "")}, [][]byte{m}
		},
	}, {
		name:    "kitops tar escaping",
		wantErr: "leaves the model",
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{}`)
			m := makeTar(t, false, []tarEntry{{name: "../../evil", body: "x"}})
			return "", blobDesc(MediaTypeKitConfig, cfg, ""), cfg, []ocispec.Descriptor{blobDesc(kitLayerPrefix+"model.v1.tar", m, "")}, [][]byte{m}
		},
	}, {
		name:    "kitops tar with a duplicate",
		wantErr: "appears twice",
		build: func() (string, ocispec.Descriptor, []byte, []ocispec.Descriptor, [][]byte) {
			cfg := []byte(`{}`)
			m := makeTar(t, false, []tarEntry{{name: "model.gguf", body: "a"}, {name: "model.gguf", body: "b"}})
			return "", blobDesc(MediaTypeKitConfig, cfg, ""), cfg, []ocispec.Descriptor{blobDesc(kitLayerPrefix+"model.v1.tar", m, "")}, [][]byte{m}
		},
	}}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tag := "f" + string(rune('a'+i))
			repo := openRef(t, host+"/models/formats:"+tag)
			at, cd, cb, ls, bs := tc.build()
			desc := pushManifest(t, repo, at, cd, cb, ls, bs, tag)
			if tc.wantErr != "" {
				_, err := Pull(ctx, repo, filepath.Join(t.TempDir(), "out"), PullOptions{})
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("pull: %v, want %q", err, tc.wantErr)
				}
				return
			}
			attachSig(t, repo, desc, h.Manifest, priv)
			opts := &VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}}
			v, err := Verify(ctx, repo, *opts)
			if err != nil {
				t.Fatal(err)
			}
			if v.Artifact.Format != tc.format || v.NeedsContent != (tc.format == FormatKitOps) {
				t.Fatalf("format %s, needs content %v", v.Artifact.Format, v.NeedsContent)
			}
			dest := filepath.Join(t.TempDir(), "out")
			if _, err := Pull(ctx, repo, dest, PullOptions{Verify: opts}); err != nil {
				t.Fatal(err)
			}
			got := readTree(t, dest)
			if len(got) != len(files) {
				t.Fatalf("pulled %v", got)
			}
			for k, v := range files {
				if got[k] != v {
					t.Errorf("%s differs", k)
				}
			}
		})
	}
	// A ModelKit whose tar content differs from the signed folder fails
	// after download, and nothing is written.
	t.Run("kitops tampered content", func(t *testing.T) {
		repo := openRef(t, host+"/models/formats:tampered")
		cfg := []byte(`{}`)
		m := makeTar(t, false, []tarEntry{{name: "model.gguf", body: "evil"}, {name: "LICENSE", body: "MIT"}, {name: "src/train.py", body: "print(1)"}})
		desc := pushManifest(t, repo, "", blobDesc(MediaTypeKitConfig, cfg, ""), cfg, []ocispec.Descriptor{blobDesc(kitLayerPrefix+"model.v1.tar", m, "")}, [][]byte{m}, "tampered")
		attachSig(t, repo, desc, h.Manifest, priv)
		dest := filepath.Join(t.TempDir(), "out")
		_, err := Pull(ctx, repo, dest, PullOptions{Verify: &VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}}})
		if !errors.Is(err, verify.ErrFailed) || !strings.Contains(err.Error(), "changed: model.gguf") {
			t.Fatalf("pull: %v", err)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("pull wrote the destination")
		}
	})
}

func TestAttachFromLayers(t *testing.T) {
	// Signing an artifact from its layer digests gives the same statement
	// as signing the folder.
	ctx := context.Background()
	model := writeModel(t, testFiles)
	h, err := oms.HashModel(ctx, model, oms.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := openRef(t, "oci:"+filepath.Join(t.TempDir(), "l")+":v1")
	pushSigned(t, repo, model, nil)
	a, err := Resolve(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LayerManifest(a, h.Set.Name)
	if err != nil {
		t.Fatal(err)
	}
	m.Serialization.IgnorePaths = h.Manifest.Serialization.IgnorePaths
	got, _ := m.Statement()
	want, _ := h.Manifest.Statement()
	if !bytes.Equal(got, want) {
		t.Fatalf("statement from layers:\n%s\nfrom folder:\n%s", got, want)
	}
}

func FuzzParseManifest(f *testing.F) {
	good, _ := json.Marshal(ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeModelPack,
		Config: blobDesc(MediaTypeModelConfig, []byte("{}"), ""),
		Layers: []ocispec.Descriptor{blobDesc("application/vnd.cncf.model.weight.v1.raw", []byte("x"), "a/b.bin")},
	})
	good = bytes.Replace(good, []byte(`"mediaType"`), []byte(`"schemaVersion":2,"mediaType"`), 1)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("a/b.bin"), []byte("../b"), 1))
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.kitops.modelkit.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.kitops.modelkit.model.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseManifest(ocispec.Descriptor{}, data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, l := range a.Layers {
			if l.Packing == Raw {
				if CheckPath(l.Path) != nil || seen[l.Path] {
					t.Fatalf("accepted unsafe or duplicate path %q", l.Path)
				}
				seen[l.Path] = true
			}
			if l.Descriptor.Size < 0 || l.Descriptor.Size > MaxBlobSize {
				t.Fatalf("accepted size %d", l.Descriptor.Size)
			}
		}
	})
}
