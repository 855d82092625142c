package oci

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/modelseal/modelseal/pkg/oci/ocitest"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
)

const keyDir = "../../testdata/model-signing/keys/certificate"

func vectorKey(t testing.TB) (*ecdsa.PrivateKey, *ecdsa.PublicKey) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keyDir, "signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := sign.ParsePrivateKey(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return priv, &priv.PublicKey
}

func otherKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testFiles = map[string]string{
	"config.json":                `{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","torch_dtype":"float32"}`,
	"README.md":                  "---\nlicense: apache-2.0\n---\n# tiny\n",
	"model.safetensors":          strings.Repeat("weights!", 1000),
	"tokenizer/tokenizer.json":   `{"version":"1.0"}`,
	"tokenizer/special/map.json": `{}`,
	".hidden":                    "dotfiles are model files too",
	".git/HEAD":                  "ref: refs/heads/main\n",
}

func writeModel(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-model")
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// backend opens a reference for a repository on one kind of storage.
type backend struct {
	name string
	ref  func(t testing.TB, repo string) string
}

func openRef(t testing.TB, ref string) *Repo {
	t.Helper()
	r, err := Open(context.Background(), ref, OpenOptions{PlainHTTP: true, CreateLayout: true,
		Credentials: auth.StaticCredential("", auth.EmptyCredential)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func backends() []backend {
	return []backend{
		{"layout", func(t testing.TB, repo string) string {
			return "oci:" + filepath.Join(t.TempDir(), repo) + ":v1"
		}},
		{"olareg", func(t testing.TB, repo string) string {
			return ocitest.Olareg(t, nil) + "/models/" + repo + ":v1"
		}},
		{"docker-registry", func(t testing.TB, repo string) string {
			return ocitest.DockerRegistry(t) + "/models/" + repo + ":v1"
		}},
	}
}

// pushSigned pushes the model folder, signs it with priv and attaches the
// signature; it returns the manifest descriptor.
func pushSigned(t testing.TB, repo *Repo, model string, priv *ecdsa.PrivateKey) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	h, err := oms.HashModel(ctx, model, oms.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := Push(ctx, repo, h.Set, h.Digests, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if priv != nil {
		attachSig(t, repo, desc, h.Manifest, priv)
	}
	return desc
}

func attachSig(t testing.TB, repo *Repo, subject ocispec.Descriptor, m *oms.Manifest, priv *ecdsa.PrivateKey) {
	t.Helper()
	ks, err := sign.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.Model(context.Background(), m, ks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AttachSignature(context.Background(), repo, subject, bundle, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func readTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func withoutGit(files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range files {
		if !strings.HasPrefix(k, ".git/") {
			out[k] = v
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	priv, pub := vectorKey(t)
	model := writeModel(t, testFiles)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			ref := b.ref(t, "tiny")
			repo := openRef(t, ref)
			desc := pushSigned(t, repo, model, priv)
			bom := []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}`)
			if _, err := AttachBOM(ctx, repo, desc, bom, time.Time{}); err != nil {
				t.Fatal(err)
			}

			// A fresh client, as a consumer would have.
			repo = openRef(t, ref)
			v, err := Verify(ctx, repo, VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}})
			if err != nil {
				t.Fatal(err)
			}
			if v.NeedsContent || v.Artifact.Descriptor.Digest != desc.Digest || len(v.Signed.Resources) != 6 {
				t.Fatalf("verified %+v", v)
			}
			// Every layer digest is the file's sha256.
			for _, l := range v.Artifact.Layers {
				sum := sha256.Sum256([]byte(testFiles[l.Path]))
				if l.Descriptor.Digest.Encoded() != hex.EncodeToString(sum[:]) {
					t.Errorf("layer %s: digest %s is not the file's sha256", l.Path, l.Descriptor.Digest)
				}
			}
			boms, err := FetchBOM(ctx, repo, desc)
			if err != nil || len(boms) != 1 || !bytes.Equal(boms[0], bom) {
				t.Fatalf("BOM referrers: %d, %v", len(boms), err)
			}
			if b.name == "docker-registry" {
				// No referrers API: the signature went to the referrers tag.
				tag := "sha256-" + desc.Digest.Encoded()
				if _, err := repo.Target.Resolve(ctx, tag); err != nil {
					t.Fatalf("referrers tag %s: %v", tag, err)
				}
			}

			dest := filepath.Join(t.TempDir(), "pulled")
			p, err := Pull(ctx, repo, dest, PullOptions{Verify: &VerifyOptions{Verifier: &verify.KeyVerifier{Key: pub}}})
			if err != nil {
				t.Fatal(err)
			}
			got, want := readTree(t, dest), withoutGit(testFiles)
			if len(got) != len(want) || p.Files != len(want) {
				t.Fatalf("pulled %d files (%d reported), want %d: %v", len(got), p.Files, len(want), got)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: pulled content differs", k)
				}
			}
			// The pulled folder verifies with the same signature.
			if _, err := verify.Model(ctx, dest, v.Signature.Data, verify.Options{Verifier: &verify.KeyVerifier{Key: pub}}); err != nil {
				t.Fatalf("pulled folder does not verify against the attached signature: %v", err)
			}
		})
	}
}

func TestPushReproducible(t *testing.T) {
	model := writeModel(t, testFiles)
	var digests []digest.Digest
	for range 2 {
		repo := openRef(t, "oci:"+filepath.Join(t.TempDir(), "l"))
		digests = append(digests, pushSigned(t, repo, model, nil).Digest)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two pushes of the same folder: %s and %s", digests[0], digests[1])
	}
	// The config carries the metadata.
	repo := openRef(t, "oci:"+filepath.Join(t.TempDir(), "l"))
	desc := pushSigned(t, repo, model, nil)
	a, err := Resolve(context.Background(), repo)
	if err != nil || a.Descriptor.Digest != desc.Digest || a.Format != FormatModelPack {
		t.Fatalf("resolve: %v %+v", err, a)
	}
	if a.Manifest.Annotations[ocispec.AnnotationCreated] != "1970-01-01T00:00:00Z" || a.Manifest.ArtifactType != ArtifactTypeModelPack {
		t.Fatalf("manifest annotations %v, artifactType %s", a.Manifest.Annotations, a.Manifest.ArtifactType)
	}
	cfg, err := fetchSmall(context.Background(), repo.Target, a.Manifest.Config, MaxManifestSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"architecture":"GPT2LMHeadModel"`, `"family":"gpt2"`, `"licenses":["apache-2.0"]`, `"format":"safetensors"`, `"type":"layers"`, `"name":"tiny-model"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %s: %s", want, cfg)
		}
	}
}

// pushManifest pushes blobs and a manifest built by hand (an attacker's).
func pushManifest(t testing.TB, repo *Repo, artifactType string, config ocispec.Descriptor, configData []byte, layers []ocispec.Descriptor, blobs [][]byte, tag string) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	if err := pushBytes(ctx, repo.Target, config, configData); err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		if err := pushBytes(ctx, repo.Target, l, blobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	desc, err := oras.PackManifest(ctx, repo.Target, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		Layers: layers, ConfigDescriptor: &config,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "2024-01-01T00:00:00Z"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Target.Tag(ctx, desc, tag); err != nil {
		t.Fatal(err)
	}
	return desc
}

func blobDesc(mt string, data []byte, path string) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if path != "" {
		d.Annotations = map[string]string{AnnotationFilepath: path}
	}
	return d
}

func TestAttacks(t *testing.T) {
	ctx := context.Background()
	priv, pub := vectorKey(t)
	keyV := &verify.KeyVerifier{Key: pub}
	model := writeModel(t, testFiles)
	h, err := oms.HashModel(ctx, model, oms.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	layers, err := Layers(h.Set, h.Digests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(`{"descriptor":{},"modelfs":{"type":"layers","diffIds":[]},"config":{}}`)
	cfgDesc := blobDesc(MediaTypeModelConfig, cfg, "")
	blobs := make([][]byte, len(layers))
	for i, l := range layers {
		blobs[i] = []byte(testFiles[l.Annotations[AnnotationFilepath]])
	}

	tests := []struct {
		name string
		// setup pushes to repo and returns the tag to verify and pull.
		setup   func(t *testing.T, repo *Repo) string
		wantErr error
		wantMsg string
	}{{
		name: "layer swapped after signing, signature copied over",
		setup: func(t *testing.T, repo *Repo) string {
			pushSigned(t, repo, model, priv)
			evil := []byte("evil weights")
			ls := append([]ocispec.Descriptor{}, layers...)
			bl := append([][]byte{}, blobs...)
			for i, l := range ls {
				if l.Annotations[AnnotationFilepath] == "model.safetensors" {
					ls[i] = blobDesc(l.MediaType, evil, "model.safetensors")
					bl[i] = evil
				}
			}
			desc := pushManifest(t, repo, ArtifactTypeModelPack, cfgDesc, cfg, ls, bl, "swapped")
			attachSig(t, repo, desc, h.Manifest, priv) // the genuine signature, re-attached
			return "swapped"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "changed: model.safetensors",
	}, {
		name: "extra file added, signature copied over",
		setup: func(t *testing.T, repo *Repo) string {
			extra := []byte("import os; os.system('id')")
			ls := append(append([]ocispec.Descriptor{}, layers...), blobDesc("application/vnd.cncf.model.code.v1.raw", extra, "hook.py"))
			bl := append(append([][]byte{}, blobs...), extra)
			desc := pushManifest(t, repo, ArtifactTypeModelPack, cfgDesc, cfg, ls, bl, "extra")
			attachSig(t, repo, desc, h.Manifest, priv)
			return "extra"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "extra (not signed): hook.py",
	}, {
		name: "file removed, signature copied over",
		setup: func(t *testing.T, repo *Repo) string {
			desc := pushManifest(t, repo, ArtifactTypeModelPack, cfgDesc, cfg, layers[1:], blobs[1:], "missing")
			attachSig(t, repo, desc, h.Manifest, priv)
			return "missing"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "missing: ",
	}, {
		name: "signature from another key",
		setup: func(t *testing.T, repo *Repo) string {
			pushSigned(t, repo, model, otherKey(t))
			return "v1"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "key mismatch",
	}, {
		name: "no signature",
		setup: func(t *testing.T, repo *Repo) string {
			pushSigned(t, repo, model, nil)
			return "v1"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "no signature is attached",
	}, {
		name: "referrer whose subject is another manifest",
		setup: func(t *testing.T, repo *Repo) string {
			// A genuine signed model B, and model A listing B's signature
			// among its referrers (through the referrers tag).
			descB := pushSigned(t, repo, model, priv)
			descA := pushManifest(t, repo, ArtifactTypeModelPack, cfgDesc, cfg, layers, blobs, "a")
			refs, _, err := Referrers(ctx, repo, descB, MediaTypeSigstoreBundle, MediaTypeSigstoreBundle, maxBundleBlob)
			if err != nil || len(refs) != 1 {
				t.Fatalf("referrers of B: %v", err)
			}
			idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
				Manifests: []ocispec.Descriptor{refs[0].Descriptor}})
			idxDesc := blobDesc(ocispec.MediaTypeImageIndex, idx, "")
			if err := repo.Target.Push(ctx, idxDesc, bytes.NewReader(idx)); err != nil {
				t.Fatal(err)
			}
			if err := repo.Target.Tag(ctx, idxDesc, "sha256-"+descA.Digest.Encoded()); err != nil {
				t.Fatal(err)
			}
			return "a"
		},
		wantErr: verify.ErrFailed,
		wantMsg: "not the model manifest",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// docker-registry serves the referrers tag that the subject
			// attack needs; olareg computes referrers from subjects.
			host := ocitest.Olareg(t, nil)
			if strings.Contains(tc.name, "subject") {
				host = ocitest.DockerRegistry(t)
			}
			repo := openRef(t, host+"/models/tiny:v1")
			tag := tc.setup(t, repo)
			ref := host + "/models/tiny:" + tag
			_, err := Verify(ctx, openRef(t, ref), VerifyOptions{Verifier: keyV})
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), ref) {
				t.Fatalf("verify: %v\nwant %v containing %q and the reference", err, tc.wantErr, tc.wantMsg)
			}
			dest := filepath.Join(t.TempDir(), "out")
			if _, err := Pull(ctx, openRef(t, ref), dest, PullOptions{Verify: &VerifyOptions{Verifier: keyV}}); !errors.Is(err, tc.wantErr) {
				t.Fatalf("pull: %v", err)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatalf("pull left %s behind", dest)
			}
		})
	}
}
