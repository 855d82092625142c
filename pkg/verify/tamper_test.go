package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
)

func vectorSigner(t testing.TB) (*ecdsa.PrivateKey, *sign.KeySigner) {
	priv, err := sign.ParsePrivateKey(readFile(t, filepath.Join(vectors, "keys/certificate/signing-key.pem")), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

func makeModel(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	files := map[string]string{
		"config.json":         `{"model_type":"bert"}`,
		"weights/part-1.bin":  strings.Repeat("w", 5000),
		"weights/part-2.bin":  strings.Repeat("v", 3000),
		".hidden":             "dot",
		"empty.txt":           "",
		".git/objects/ab/cd":  "git object",
		".gitattributes":      "*.bin filter=lfs",
		"nested/deep/x.model": "x",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "empty-folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// signTo hashes and signs model, writing model.sig inside it.
func signTo(t testing.TB, model string, s sign.Signer, shardSize int64) string {
	t.Helper()
	sigPath := filepath.Join(model, "model.sig")
	if fi, err := os.Stat(model); err == nil && !fi.IsDir() {
		sigPath = filepath.Join(filepath.Dir(model), "model.sig")
	}
	h, err := oms.HashModel(context.Background(), model, oms.HashOptions{
		SignaturePath: sigPath,
		Digest:        digest.Options{ShardSize: shardSize},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := sign.Model(context.Background(), h.Manifest, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sigPath
}

func write(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTamper signs a model, changes it, and checks each failure's message.
func TestTamper(t *testing.T) {
	_, signer := vectorSigner(t)
	otherPriv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name   string
		shards int64
		tamper func(t *testing.T, model, sigPath string)
		opts   func(o *Options)
		want   []string // substrings of the error; nil = verifies
	}{
		{name: "untouched"},
		{name: "untouched shards", shards: 1024},
		{name: "git paths and empty folders do not matter", tamper: func(t *testing.T, m, _ string) {
			write(t, filepath.Join(m, ".git/objects/ab/cd"), "changed")
			os.MkdirAll(filepath.Join(m, "another-empty"), 0o755)
		}},
		{name: "flipped byte", tamper: func(t *testing.T, m, _ string) {
			p := filepath.Join(m, "weights/part-1.bin")
			b := readFile(t, p)
			b[4321] ^= 1
			write(t, p, string(b))
		}, want: []string{"1 changed, 0 missing, 0 extra", "changed: weights/part-1.bin"}},
		{name: "flipped byte shards", shards: 1024, tamper: func(t *testing.T, m, _ string) {
			p := filepath.Join(m, "weights/part-1.bin")
			b := readFile(t, p)
			b[4321] ^= 1
			write(t, p, string(b))
		}, want: []string{"changed: weights/part-1.bin"}},
		{name: "renamed", tamper: func(t *testing.T, m, _ string) {
			os.Rename(filepath.Join(m, "config.json"), filepath.Join(m, "config2.json"))
		}, want: []string{"missing: config.json", "extra (not signed): config2.json"}},
		{name: "added dotfile", tamper: func(t *testing.T, m, _ string) {
			write(t, filepath.Join(m, "nested/.evil"), "x")
		}, want: []string{"extra (not signed): nested/.evil"}},
		{name: "added, unsigned files ignored", tamper: func(t *testing.T, m, _ string) {
			write(t, filepath.Join(m, "README.md"), "x")
		}, opts: func(o *Options) { o.IgnoreUnsigned = true }},
		{name: "added, ignored by path", tamper: func(t *testing.T, m, _ string) {
			write(t, filepath.Join(m, "README.md"), "x")
		}, opts: func(o *Options) { o.IgnorePaths = []string{"README.md"} }},
		{name: "removed", tamper: func(t *testing.T, m, _ string) {
			os.Remove(filepath.Join(m, "empty.txt"))
		}, want: []string{"missing: empty.txt"}},
		{name: "removed, unsigned files ignored still fails", tamper: func(t *testing.T, m, _ string) {
			os.Remove(filepath.Join(m, ".hidden"))
		}, opts: func(o *Options) { o.IgnoreUnsigned = true }, want: []string{"missing: .hidden"}},
		{name: "truncated", tamper: func(t *testing.T, m, _ string) {
			os.Truncate(filepath.Join(m, "weights/part-2.bin"), 2048)
		}, want: []string{"changed: weights/part-2.bin"}},
		{name: "truncated shards", shards: 1024, tamper: func(t *testing.T, m, _ string) {
			os.Truncate(filepath.Join(m, "weights/part-2.bin"), 2048)
		}, want: []string{"changed: weights/part-2.bin"}},
		{name: "swapped signature", tamper: func(t *testing.T, _, sigPath string) {
			// model_signing 1.1's signature by the same key, over another model.
			write(t, sigPath, string(readFile(t, filepath.Join(vectors, "v1.1.0-elliptic-key/model.sig"))))
		}, want: []string{"missing: signme-1", "extra (not signed): config.json"}},
		{name: "swapped envelope signature", tamper: func(t *testing.T, _, sigPath string) {
			other := readFile(t, filepath.Join(vectors, "v1.1.0-elliptic-key/model.sig"))
			var o, m map[string]any
			json.Unmarshal(other, &o)
			json.Unmarshal(readFile(t, sigPath), &m)
			m["dsseEnvelope"].(map[string]any)["signatures"] = o["dsseEnvelope"].(map[string]any)["signatures"]
			b, _ := json.Marshal(m)
			write(t, sigPath, string(b))
		}, want: []string{"signature does not verify"}},
		{name: "edited payload", tamper: func(t *testing.T, _, sigPath string) {
			var m map[string]any
			json.Unmarshal(readFile(t, sigPath), &m)
			env := m["dsseEnvelope"].(map[string]any)
			p, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
			p = []byte(strings.Replace(string(p), `"name": "config.json"`, `"name": "config.jsom"`, 1))
			env["payload"] = base64.StdEncoding.EncodeToString(p)
			b, _ := json.Marshal(m)
			write(t, sigPath, string(b))
		}, want: []string{"signature does not verify"}},
		{name: "wrong key", opts: func(o *Options) { o.Verifier = &KeyVerifier{Key: &otherPriv.PublicKey} },
			want: []string{"key mismatch"}},
		{name: "symlink refused", tamper: func(t *testing.T, m, _ string) {
			os.Symlink("config.json", filepath.Join(m, "link.json"))
		}, want: []string{"link.json: symbolic link"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := makeModel(t)
			sigPath := signTo(t, model, signer, tt.shards)
			if tt.tamper != nil {
				tt.tamper(t, model, sigPath)
			}
			opts := Options{Verifier: vectorKey(t), SignaturePath: sigPath}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			res, err := Model(context.Background(), model, readFile(t, sigPath), opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				if n := len(res.Hashed.Set.Files); n != 6 && !strings.Contains(tt.name, "ignored") {
					t.Errorf("%d files, want 6", n)
				}
				return
			}
			if err == nil {
				t.Fatal("verified, want a failure")
			}
			if !errors.Is(err, ErrFailed) {
				t.Errorf("%v is not ErrFailed", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestSymlinkPolicy signs with links allowed and checks the escape rule.
func TestSymlinkPolicy(t *testing.T) {
	priv, signer := vectorSigner(t)
	_ = priv
	model := makeModel(t)
	outside := filepath.Join(filepath.Dir(model), "outside.bin")
	write(t, outside, "secret")
	if err := os.Symlink("config.json", filepath.Join(model, "alias.json")); err != nil {
		t.Skip("symbolic links unavailable:", err)
	}
	sigPath := filepath.Join(model, "model.sig")
	h, err := oms.HashModel(context.Background(), model, oms.HashOptions{
		SignaturePath: sigPath, Files: modelfs.Options{Symlinks: modelfs.FollowSymlinks},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := sign.Model(context.Background(), h.Manifest, signer)
	if err != nil {
		t.Fatal(err)
	}
	write(t, sigPath, string(data))
	if _, err := Model(context.Background(), model, data, Options{Verifier: vectorKey(t), SignaturePath: sigPath}); err != nil {
		t.Fatalf("inside link: %v", err)
	}
	// A link that leaves the model is never followed.
	if err := os.Symlink(outside, filepath.Join(model, "escape.bin")); err != nil {
		t.Fatal(err)
	}
	_, err = Model(context.Background(), model, data, Options{Verifier: vectorKey(t), SignaturePath: sigPath})
	if err == nil || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "escape.bin: symbolic link") || !strings.Contains(err.Error(), "escapes") {
		t.Fatalf("escape: %v", err)
	}
	if _, err := oms.HashModel(context.Background(), model, oms.HashOptions{Files: modelfs.Options{Symlinks: modelfs.FollowSymlinks}}); err == nil {
		t.Fatal("hashing followed a link out of the model")
	}
}

// TestSingleFileModel signs one file; model_signing's "." resource name is
// accepted too (see the v0.3.1 and v1.0.0 vectors).
func TestSingleFileModel(t *testing.T) {
	_, signer := vectorSigner(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "model.safetensors")
	write(t, model, "tensor bytes")
	sigPath := signTo(t, model, signer, 0)
	b, err := ParseBundle(readFile(t, sigPath))
	if err != nil {
		t.Fatal(err)
	}
	m, err := oms.ParseStatement(b.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelName != "model.safetensors" || len(m.Resources) != 1 || m.Resources[0].Name != "model.safetensors" {
		t.Errorf("manifest %+v", m)
	}
	opts := Options{Verifier: vectorKey(t), SignaturePath: sigPath}
	if _, err := Model(context.Background(), model, readFile(t, sigPath), opts); err != nil {
		t.Fatal(err)
	}
	write(t, model, "tensor bytez")
	if _, err := Model(context.Background(), model, readFile(t, sigPath), opts); err == nil || !strings.Contains(err.Error(), "changed: model.safetensors") {
		t.Fatalf("changed single file: %v", err)
	}
}

// TestDotDotRefused signs a manifest naming "../x" and checks that
// verification refuses it, with or without --ignore-unsigned-files.
func TestDotDotRefused(t *testing.T) {
	_, signer := vectorSigner(t)
	model := makeModel(t)
	write(t, filepath.Join(filepath.Dir(model), "x"), "outside")
	for _, name := range []string{"../x", "/etc/passwd", "a/../../x", "./config.json"} {
		m := &oms.Manifest{
			ModelName:     "model",
			Serialization: oms.Serialization{Method: oms.MethodFiles, HashType: digest.SHA256},
			Resources:     []oms.Resource{{Name: name, Algorithm: "sha256", Digest: make([]byte, 32)}},
		}
		data, err := sign.Model(context.Background(), m, signer)
		if err != nil {
			t.Fatal(err)
		}
		for _, unsigned := range []bool{false, true} {
			_, err := Model(context.Background(), model, data, Options{Verifier: vectorKey(t), IgnoreUnsigned: unsigned})
			if err == nil || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "not a clean path") {
				t.Errorf("%q (ignore unsigned %v): %v", name, unsigned, err)
			}
		}
	}
}

// TestCertificateChecks covers the certificate verifier's PKI rules with
// a generated CA: expiry, key usage, unknown CA.
func TestCertificateChecks(t *testing.T) {
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := func(serial int64, nb, na time.Time, ku x509.KeyUsage, eku []x509.ExtKeyUsage) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "signer"}, // no SAN
			NotBefore: nb, NotAfter: na, KeyUsage: ku, ExtKeyUsage: eku,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leafKey.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	otherCAKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &otherCAKey.PublicKey, otherCAKey)
	otherCA, _ := x509.ParseCertificate(otherDER)
	tests := []struct {
		name  string
		leaf  *x509.Certificate
		roots []*x509.Certificate
		want  string
	}{
		{"valid, digitalSignature", leaf(2, now.Add(-time.Hour), now.Add(time.Hour), x509.KeyUsageDigitalSignature, nil), []*x509.Certificate{ca}, ""},
		{"valid, codeSigning only", leaf(3, now.Add(-time.Hour), now.Add(time.Hour), 0, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}), []*x509.Certificate{ca}, ""},
		{"expired", leaf(4, now.Add(-3*time.Hour), now.Add(-2*time.Hour), x509.KeyUsageDigitalSignature, nil), []*x509.Certificate{ca}, "is not valid at"},
		{"not yet valid", leaf(5, now.Add(time.Hour), now.Add(2*time.Hour), x509.KeyUsageDigitalSignature, nil), []*x509.Certificate{ca}, "is not valid at"},
		{"no signing usage", leaf(6, now.Add(-time.Hour), now.Add(time.Hour), x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}), []*x509.Certificate{ca}, "neither digitalSignature nor codeSigning"},
		{"unknown CA", leaf(7, now.Add(-time.Hour), now.Add(time.Hour), x509.KeyUsageDigitalSignature, nil), []*x509.Certificate{otherCA}, "certificate chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sign.NewCertificateSigner(leafKey, tt.leaf, nil)
			if err != nil {
				t.Fatal(err)
			}
			model := makeModel(t)
			sigPath := signTo(t, model, s, 0)
			_, err = Model(context.Background(), model, readFile(t, sigPath), Options{
				Verifier: &CertificateVerifier{Roots: tt.roots}, SignaturePath: sigPath,
			})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestCertificateRoundTripVectors signs with the vectors' leaf and
// intermediate and verifies against their root.
func TestCertificateRoundTripVectors(t *testing.T) {
	priv, _ := vectorSigner(t)
	leaf, _ := sign.ParseCertificates(readFile(t, filepath.Join(vectors, "keys/certificate/signing-key-cert.pem")))
	inter, _ := sign.ParseCertificates(readFile(t, filepath.Join(vectors, "keys/certificate/int-ca-cert.pem")))
	s, err := sign.NewCertificateSigner(priv, leaf[0], inter)
	if err != nil {
		t.Fatal(err)
	}
	model := makeModel(t)
	sigPath := signTo(t, model, s, 0)
	if _, err := Model(context.Background(), model, readFile(t, sigPath), Options{Verifier: vectorCA(t), SignaturePath: sigPath}); err != nil {
		t.Fatal(err)
	}
	// Trusting only the intermediate is enough too (it is a CA).
	if _, err := Model(context.Background(), model, readFile(t, sigPath), Options{Verifier: &CertificateVerifier{Roots: inter}, SignaturePath: sigPath}); err != nil {
		t.Fatal(err)
	}
}
