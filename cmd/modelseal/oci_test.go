package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/oci/ocitest"
)

const testKeys = "../../testdata/model-signing/keys/certificate"

func ociModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	for name, body := range map[string]string{
		"config.json":       `{"architectures":["BertModel"],"model_type":"bert"}`,
		"README.md":         "---\nlicense: mit\n---\n# tiny\n",
		"model.safetensors": strings.Repeat("w", 4096),
		"sub/vocab.txt":     "a\nb\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func otherPublicKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	p := filepath.Join(t.TempDir(), "other.pub")
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	return p
}

func TestCLIOCIRoundTrip(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of the machine
	model := ociModel(t)
	priv := filepath.Join(testKeys, "signing-key.pem")
	pub := filepath.Join(testKeys, "signing-key-pub.pem")
	other := otherPublicKey(t)
	refs := map[string]string{
		"layout":          "oci:" + filepath.Join(t.TempDir(), "layout") + ":v1",
		"olareg":          ocitest.Olareg(t, nil) + "/models/tiny:v1",
		"docker-registry": ocitest.DockerRegistry(t) + "/models/tiny:v1",
	}
	for name, ref := range refs {
		t.Run(name, func(t *testing.T) {
			steps := []struct {
				args     []string
				code     int
				contains string
			}{
				{[]string{"push", "--plain-http", "--sign", "--private-key", priv, "--bom", model, ref}, 0, "attached BOM"},
				{[]string{"verify", "key", "--plain-http", "--public-key", pub, ref}, 0, "no blob downloaded"},
				{[]string{"verify", "key", "--plain-http", "--public-key", other, ref}, 1, "key mismatch"},
				{[]string{"verify", "key", "--plain-http", "--scan", "--public-key", pub, ref}, 0, "scanned"},
				{[]string{"pull", "--plain-http", ref, filepath.Join(t.TempDir(), "a")}, 3, "--insecure-skip-verify"},
				{[]string{"pull", "--plain-http", "--public-key", other, ref, filepath.Join(t.TempDir(), "b")}, 1, "key mismatch"},
				{[]string{"pull", "--plain-http", "--insecure-skip-verify", ref, filepath.Join(t.TempDir(), "c")}, 0, "UNVERIFIED"},
				{[]string{"push", "--plain-http", "--bom", "x.json", model, ref}, 3, "--bom=FILE"},
				{[]string{"attach", "--plain-http", ref}, 3, "nothing to attach"},
			}
			for _, s := range steps {
				code, out, errs := runCLI(s.args...)
				if code != s.code || !strings.Contains(out+errs, s.contains) {
					t.Fatalf("modelseal %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, s.contains, out, errs)
				}
			}
			dest := filepath.Join(t.TempDir(), "pulled")
			code, out, errs := runCLI("pull", "--plain-http", "--public-key", pub, ref, dest)
			if code != 0 || !strings.Contains(out, "4 files") {
				t.Fatalf("pull: exit %d\n%s%s", code, out, errs)
			}
			for _, f := range []string{"config.json", "README.md", "model.safetensors", "sub/vocab.txt"} {
				a, _ := os.ReadFile(filepath.Join(model, f))
				b, err := os.ReadFile(filepath.Join(dest, f))
				if err != nil || string(a) != string(b) {
					t.Fatalf("%s differs after pull: %v", f, err)
				}
			}
		})
	}
}

func TestCLIAttach(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	model := ociModel(t)
	ref := ocitest.Olareg(t, nil) + "/models/tiny:v2"
	pub := filepath.Join(testKeys, "signing-key-pub.pem")
	bom := filepath.Join(t.TempDir(), "bom.json")
	os.WriteFile(bom, []byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}`), 0o644)
	steps := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"push", "--plain-http", model, ref}, 0, "pushed tiny: 4 files"},
		{[]string{"verify", "key", "--plain-http", "--public-key", pub, ref}, 1, "no signature is attached"},
		{[]string{"attach", "--plain-http", "--sign=key", "--private-key", filepath.Join(testKeys, "signing-key.pem"), "--bom=" + bom, ref}, 0, "attached BOM"},
		{[]string{"verify", "key", "--plain-http", "--public-key", pub, ref}, 0, "4 files"},
		{[]string{"verify", "key", "--plain-http", "--public-key", pub, ref + "-missing"}, 2, "not found"},
	}
	for _, s := range steps {
		code, out, errs := runCLI(s.args...)
		if code != s.code || !strings.Contains(out+errs, s.contains) {
			t.Fatalf("modelseal %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, s.contains, out, errs)
		}
	}
	// The signature made from the layer digests verifies the folder too.
	dest := filepath.Join(t.TempDir(), "pulled")
	if code, out, errs := runCLI("pull", "--plain-http", "--public-key", pub, ref, dest); code != 0 {
		t.Fatalf("pull: %d %s %s", code, out, errs)
	}
}

func TestIsOCIRef(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "example.com")
	os.MkdirAll(filepath.Join(local, "repo"), 0o755)
	wd, _ := os.Getwd()
	os.Chdir(dir)
	defer os.Chdir(wd)
	for _, tc := range []struct {
		arg  string
		want bool
	}{
		{"oci:/tmp/layout", true},
		{"oci:layout:v1", true},
		{"localhost:5000/models/tiny:v1", true},
		{"ghcr.io/me/tiny@sha256:" + strings.Repeat("a", 64), true},
		{"example.com/repo", false}, // an existing local folder wins
		{"model-folder", false},
		{"./model", false},
		{"/abs/model", false},
		{"models/tiny", false},
	} {
		if got := isOCIRef(tc.arg); got != tc.want {
			t.Errorf("isOCIRef(%q) = %v, want %v", tc.arg, got, tc.want)
		}
	}
}

func TestCLICertificateOverOCI(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	model := ociModel(t)
	ref := "oci:" + filepath.Join(t.TempDir(), "layout") + ":cert"
	k := func(f string) string { return filepath.Join(testKeys, f) }
	steps := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"push", "--sign", "--private-key", k("signing-key.pem"), "--signing-cert", k("signing-key-cert.pem"), "--cert-chain", k("int-ca-cert.pem"), model, ref}, 0, "(certificate)"},
		{[]string{"verify", "certificate", "--cert-chain", k("ca-cert.pem"), ref}, 0, "certificate signature"},
		{[]string{"verify", "key", "--public-key", otherPublicKey(t), ref}, 1, "verification failed"},
		{[]string{"pull", "--cert-chain", k("ca-cert.pem"), ref, filepath.Join(t.TempDir(), "out")}, 0, "verified (certificate signature"},
	}
	for _, s := range steps {
		code, out, errs := runCLI(s.args...)
		if code != s.code || !strings.Contains(out+errs, s.contains) {
			t.Fatalf("modelseal %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.code, s.contains, out, errs)
		}
	}
}
