package sign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/youmark/pkcs8"

	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
)

const keys = "../../testdata/model-signing/keys/certificate"

func read(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeModel(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my-model")
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pythonCheck follows model_signing's key verifier step by step, with
// nothing but the standard library: hint, PAE, signature, payload, root
// digest, and each file's digest.
func pythonCheck(t *testing.T, bundleJSON []byte, pub *ecdsa.PublicKey, wantHint, modelDir string) {
	t.Helper()
	var b struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey *struct {
				Hint string `json:"hint"`
			} `json:"publicKey"`
			X509CertificateChain *struct {
				Certificates []struct {
					RawBytes []byte `json:"rawBytes"`
				} `json:"certificates"`
			} `json:"x509CertificateChain"`
		} `json:"verificationMaterial"`
		DsseEnvelope struct {
			Payload     string `json:"payload"`
			PayloadType string `json:"payloadType"`
			Signatures  []struct {
				Sig string `json:"sig"`
			} `json:"signatures"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(bundleJSON, &b); err != nil {
		t.Fatal(err)
	}
	if b.MediaType != "application/vnd.dev.sigstore.bundle.v0.3+json" {
		t.Errorf("mediaType %q", b.MediaType)
	}
	// 1. hint = hex(sha256(public_bytes(PEM, SubjectPublicKeyInfo)))
	if wantHint != "" {
		if b.VerificationMaterial.PublicKey == nil || b.VerificationMaterial.PublicKey.Hint != wantHint {
			t.Errorf("hint %+v, want %s", b.VerificationMaterial.PublicKey, wantHint)
		}
	}
	// 2. signature over pae(payload) with ECDSA and the curve's hash.
	payload, err := base64.StdEncoding.DecodeString(b.DsseEnvelope.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if b.DsseEnvelope.PayloadType != "application/vnd.in-toto+json" || len(b.DsseEnvelope.Signatures) != 1 {
		t.Fatalf("envelope %+v", b.DsseEnvelope)
	}
	sig, err := base64.StdEncoding.DecodeString(b.DsseEnvelope.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(b.DsseEnvelope.PayloadType), b.DsseEnvelope.PayloadType, len(payload), payload)
	var d []byte
	switch pub.Curve {
	case elliptic.P256():
		s := sha256.Sum256([]byte(pae))
		d = s[:]
	case elliptic.P384():
		s := sha512.Sum384([]byte(pae))
		d = s[:]
	case elliptic.P521():
		s := sha512.Sum512([]byte(pae))
		d = s[:]
	}
	if !ecdsa.VerifyASN1(pub, d, sig) {
		t.Fatal("signature does not verify over the standard PAE")
	}
	// 3. payload: statement type, predicate type, one subject, root digest.
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	if st["_type"] != "https://in-toto.io/Statement/v1" || st["predicateType"] != "https://model_signing/signature/v1.0" {
		t.Fatalf("statement header %v %v", st["_type"], st["predicateType"])
	}
	subjects := st["subject"].([]any)
	if len(subjects) != 1 {
		t.Fatalf("%d subjects", len(subjects))
	}
	subj := subjects[0].(map[string]any)
	if subj["name"] != filepath.Base(modelDir) {
		t.Errorf("subject name %v, want %s", subj["name"], filepath.Base(modelDir))
	}
	pred := st["predicate"].(map[string]any)
	ser := pred["serialization"].(map[string]any)
	if ser["method"] != "files" || ser["hash_type"] != "sha256" || ser["allow_symlinks"] != false {
		t.Errorf("serialization %v", ser)
	}
	h := sha256.New()
	var names []string
	for _, r := range pred["resources"].([]any) {
		res := r.(map[string]any)
		raw, err := hex.DecodeString(res["digest"].(string))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(raw)
		name := res["name"].(string)
		names = append(names, name)
		// 4. each file's sha256, computed independently.
		content := read(t, filepath.Join(modelDir, filepath.FromSlash(name)))
		fs := sha256.Sum256(content)
		if res["algorithm"] != "sha256" || !bytes.Equal(fs[:], raw) {
			t.Errorf("resource %s: %v %x, file sha256 %x", name, res["algorithm"], raw, fs)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != subj["digest"].(map[string]any)["sha256"] {
		t.Errorf("root digest %s, subject says %v", got, subj["digest"])
	}
	if len(names) == 0 {
		t.Error("no resources")
	}
}

func hashed(t *testing.T, dir string, ignore ...string) *oms.Hashed {
	t.Helper()
	h, err := oms.HashModel(context.Background(), dir, oms.HashOptions{
		Files:         modelfs.Options{Ignore: ignore},
		SignaturePath: filepath.Join(dir, "model.sig"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSignKeyPythonCheck signs with the vectors' P-384 key and checks the
// result the way model_signing's verifier does.
func TestSignKeyPythonCheck(t *testing.T) {
	priv, err := ParsePrivateKey(read(t, filepath.Join(keys, "signing-key.pem")), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(read(t, filepath.Join(keys, "signing-key-pub.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&priv.PublicKey) {
		t.Fatal("vector key pair does not match")
	}
	s, err := NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModel(t, map[string]string{"signme-1": "signme-1\n", "signme-2": "signme-2", ".dotfile": "d", "sub/w.bin": "weights", ".git/HEAD": "ref"})
	h := hashed(t, dir)
	data, err := Model(context.Background(), h.Manifest, s)
	if err != nil {
		t.Fatal(err)
	}
	// The hint model_signing 1.1 wrote with the same key.
	pythonCheck(t, data, pub, "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e", dir)
	var names []string
	for _, r := range h.Manifest.Resources {
		names = append(names, r.Name)
	}
	if fmt.Sprint(names) != "[.dotfile signme-1 signme-2 sub/w.bin]" {
		t.Errorf("resources %v", names)
	}
	if fmt.Sprint(h.Manifest.Serialization.IgnorePaths) != "[.git .gitattributes .github .gitignore model.sig]" {
		t.Errorf("ignore_paths %v", h.Manifest.Serialization.IgnorePaths)
	}
}

// TestSignCertificatePythonCheck signs with the vectors' leaf certificate.
func TestSignCertificatePythonCheck(t *testing.T) {
	priv, err := ParsePrivateKey(read(t, filepath.Join(keys, "signing-key.pem")), nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseCertificates(read(t, filepath.Join(keys, "signing-key-cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ParseCertificates(read(t, filepath.Join(keys, "int-ca-cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCertificates(read(t, filepath.Join(keys, "ca-cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	// The root passed by mistake is left out of the bundle.
	s, err := NewCertificateSigner(priv, leaf[0], append(inter, ca...))
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModel(t, map[string]string{"signme-1": "signme-1", "signme-2": "signme-2"})
	data, err := Model(context.Background(), hashed(t, dir).Manifest, s)
	if err != nil {
		t.Fatal(err)
	}
	pythonCheck(t, data, leaf[0].PublicKey.(*ecdsa.PublicKey), "", dir)
	var b struct {
		VerificationMaterial struct {
			X509CertificateChain struct {
				Certificates []struct {
					RawBytes []byte `json:"rawBytes"`
				} `json:"certificates"`
			} `json:"x509CertificateChain"`
		} `json:"verificationMaterial"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	certs := b.VerificationMaterial.X509CertificateChain.Certificates
	if len(certs) != 2 || !bytes.Equal(certs[0].RawBytes, leaf[0].Raw) || !bytes.Equal(certs[1].RawBytes, inter[0].Raw) {
		t.Errorf("chain has %d certificates, want leaf + intermediate", len(certs))
	}
	// A certificate for another key is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewCertificateSigner(other, leaf[0], nil); err == nil {
		t.Error("certificate for another key accepted")
	}
}

func TestParsePrivateKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	pw := []byte("correct horse")
	sec1, _ := x509.MarshalECPrivateKey(p256)
	pk8, _ := x509.MarshalPKCS8PrivateKey(p521)
	enc8, err := pkcs8.MarshalPrivateKey(p256, pw, nil)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 testing the legacy format on purpose
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", sec1, pw, x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name    string
		data    []byte
		pw      []byte
		want    *ecdsa.PrivateKey
		wantErr error
	}{
		{"sec1", pemOf("EC PRIVATE KEY", sec1), nil, p256, nil},
		{"pkcs8 p521", pemOf("PRIVATE KEY", pk8), nil, p521, nil},
		{"text dump before", append([]byte("Public Key Info:\n\tfoo\n"), pemOf("EC PRIVATE KEY", sec1)...), nil, p256, nil},
		{"encrypted pkcs8", pemOf("ENCRYPTED PRIVATE KEY", enc8), pw, p256, nil},
		{"encrypted pkcs8 no password", pemOf("ENCRYPTED PRIVATE KEY", enc8), nil, nil, ErrPassword},
		{"encrypted pkcs8 wrong password", pemOf("ENCRYPTED PRIVATE KEY", enc8), []byte("nope"), nil, ErrPassword},
		{"legacy encrypted", pem.EncodeToMemory(legacy), pw, p256, nil},
		{"legacy encrypted no password", pem.EncodeToMemory(legacy), nil, nil, ErrPassword},
		{"no key", []byte("hello"), nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.data, tt.pw)
			if tt.want == nil {
				if err == nil {
					t.Fatal("parsed, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.want) {
				t.Error("wrong key")
			}
		})
	}
}

func TestIdentityToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer req-token" || r.URL.Query().Get("audience") != "sigstore" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"value":"gha-jwt"}`)
	}))
	defer srv.Close()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		want     string
	}{
		{"flag wins", "flag-jwt", map[string]string{"SIGSTORE_ID_TOKEN": "env-jwt"}, "flag-jwt"},
		{"env", "", map[string]string{"SIGSTORE_ID_TOKEN": "env-jwt"}, "env-jwt"},
		{"github actions", "", map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": srv.URL + "/token?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "req-token"}, "gha-jwt"},
		{"github actions refused", "", map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": srv.URL, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "bad"}, ""},
		{"nothing", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IdentityToken(context.Background(), tt.explicit, env(tt.env), srv.Client())
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSigstoreSignerServices(t *testing.T) {
	if _, err := NewSigstoreSigner(SigstoreOptions{}); err == nil {
		t.Error("keyless signer without a token accepted")
	}
	s, err := NewSigstoreSigner(SigstoreOptions{IDToken: "jwt"})
	if err != nil {
		t.Fatal(err)
	}
	bo, err := s.BundleOptions(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if bo.CertificateProvider == nil || len(bo.TransparencyLogs) != 1 || len(bo.TimestampAuthorities) != 1 {
		t.Errorf("public good: fulcio %v, %d rekor, %d tsa", bo.CertificateProvider != nil, len(bo.TransparencyLogs), len(bo.TimestampAuthorities))
	}
	// A private instance from model_signing's own trust config fixture.
	sc, tr, err := ParseTrustConfig(read(t, "../../testdata/model-signing/trust/custom_trust_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tr == nil || len(sc.FulcioCertificateAuthorityURLs()) == 0 {
		t.Fatal("trust config without trusted root or Fulcio")
	}
}

func TestKeyHintMatchesDigestOfPEM(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := PublicKeyPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte("-----BEGIN PUBLIC KEY-----\n")) || !bytes.HasSuffix(p, []byte("-----END PUBLIC KEY-----\n")) {
		t.Errorf("PEM layout %q", p)
	}
	h, _ := KeyHint(&k.PublicKey)
	s := sha256.Sum256(p)
	if h != hex.EncodeToString(s[:]) {
		t.Error("hint is not sha256 of the PEM")
	}
}
