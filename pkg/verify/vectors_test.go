package verify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/modelseal/modelseal/pkg/sign"
)

// vectors is the copy of the model_signing interoperability vectors.
const vectors = "../../testdata/model-signing"

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vectorKey(t testing.TB) *KeyVerifier {
	pub, err := sign.ParsePublicKey(readFile(t, filepath.Join(vectors, "keys/certificate/signing-key-pub.pem")))
	if err != nil {
		t.Fatal(err)
	}
	return &KeyVerifier{Key: pub}
}

func vectorCA(t testing.TB) *CertificateVerifier {
	roots, err := sign.ParseCertificates(readFile(t, filepath.Join(vectors, "keys/certificate/ca-cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	return &CertificateVerifier{Roots: roots}
}

func vectorRoot(t testing.TB) *root.TrustedRoot {
	tr, err := root.NewTrustedRootFromPath(filepath.Join(vectors, "trust/trusted_root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

const (
	vectorIdentity = "stefanb@us.ibm.com"
	vectorIssuer   = "https://sigstore.verify.ibm.com/oauth2"
)

// TestVectorsVerify verifies every signature made by model_signing 0.2 to
// 1.1, with the inputs upstream uses.
func TestVectorsVerify(t *testing.T) {
	ctx := context.Background()
	sig := &SigstoreVerifier{Identity: vectorIdentity, Issuer: vectorIssuer} // embedded public-good root
	tests := []struct {
		dir      string
		model    string // relative to dir; "" = the folder
		verifier Verifier
		ignore   []string
		files    int
	}{
		{"v0.2.0-certificate", "", vectorCA(t), nil, 2},
		{"v0.3.1-certificate", "", vectorCA(t), nil, 2},
		{"v0.3.1-elliptic-key", "signme-1", vectorKey(t), nil, 1},
		{"v0.3.1-sigstore", "", sig, nil, 2},
		{"v1.0.0-certificate", "", vectorCA(t), nil, 2},
		{"v1.0.0-elliptic-key", "signme-1", vectorKey(t), nil, 1},
		{"v1.0.0-sigstore", "", sig, nil, 2},
		{"v1.0.1-certificate", "", vectorCA(t), []string{"ignore-me"}, 2},
		{"v1.0.1-elliptic-key", "", vectorKey(t), []string{"ignore-me"}, 2},
		{"v1.0.1-sigstore", "", sig, []string{"ignore-me"}, 2},
		{"v1.1.0-certificate", "", vectorCA(t), nil, 2},
		{"v1.1.0-elliptic-key", "", vectorKey(t), nil, 2},
		{"v1.1.0-sigstore", "", &SigstoreVerifier{Trusted: vectorRoot(t), Identity: vectorIdentity, Issuer: vectorIssuer}, nil, 2},
		// upstream verify_test.py: certificate bundles with the key verifier.
		{"v0.3.1-certificate", "", vectorKey(t), nil, 2},
		{"v1.0.0-certificate", "", vectorKey(t), nil, 2},
		// regex variants of the identity policy.
		{"v1.0.1-sigstore", "", &SigstoreVerifier{IdentityRegex: `.*@us\.ibm\.com`, IssuerRegex: `https://sigstore\.verify\.ibm\.com/.*`}, []string{"ignore-me"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.dir+"/"+strings.TrimPrefix(typeName(tt.verifier), "*verify."), func(t *testing.T) {
			dir := filepath.Join(vectors, tt.dir)
			model := dir
			if tt.model != "" {
				model = filepath.Join(dir, tt.model)
			}
			sigPath := filepath.Join(dir, "model.sig")
			res, err := Model(ctx, model, readFile(t, sigPath), Options{
				Verifier: tt.verifier, IgnorePaths: tt.ignore, SignaturePath: sigPath,
			})
			if err != nil {
				t.Fatalf("verify %s: %v", tt.dir, err)
			}
			if n := len(res.Hashed.Set.Files); n != tt.files {
				t.Errorf("%d files verified, want %d", n, tt.files)
			}
		})
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *KeyVerifier:
		return "key"
	case *CertificateVerifier:
		return "certificate"
	case *SigstoreVerifier:
		return "sigstore"
	}
	return "?"
}

// TestVectorsNegative checks that the vectors fail with wrong inputs.
func TestVectorsNegative(t *testing.T) {
	ctx := context.Background()
	otherKey, err := sign.ParsePublicKey(readFile(t, filepath.Join(vectors, "keys/certificate/signing-key-pub.pem")))
	if err != nil {
		t.Fatal(err)
	}
	_ = otherKey
	intCA, err := sign.ParseCertificates(readFile(t, filepath.Join(vectors, "keys/certificate/int-ca-cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir string
		verifier  Verifier
		ignore    []string
		want      string
	}{
		{"wrong issuer", "v1.0.0-sigstore", &SigstoreVerifier{Identity: vectorIdentity, Issuer: "https://accounts.google.com"}, nil, "keyless signature"},
		{"wrong identity", "v1.0.0-sigstore", &SigstoreVerifier{Identity: "someone@example.com", Issuer: vectorIssuer}, nil, "keyless signature"},
		{"regex is anchored", "v1.0.0-sigstore", &SigstoreVerifier{IdentityRegex: `stefanb`, Issuer: vectorIssuer}, nil, "keyless signature"},
		{"wrong CA", "v1.1.0-certificate", &CertificateVerifier{Roots: intCA[:0:0]}, nil, "no CA"},
		{"key bundle with CA", "v1.1.0-elliptic-key", vectorCA(t), []string{"ignore-me"}, "no certificate"},
		{"sigstore bundle with key", "v1.0.0-sigstore", vectorKey(t), nil, "certificate's key"},
		{"unsigned file", "v1.0.1-elliptic-key", vectorKey(t), nil, "extra (not signed): ignore-me"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(vectors, tt.dir)
			sigPath := filepath.Join(dir, "model.sig")
			_, err := Model(ctx, dir, readFile(t, sigPath), Options{Verifier: tt.verifier, IgnorePaths: tt.ignore, SignaturePath: sigPath})
			if err == nil {
				t.Fatal("verified, want a failure")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if tt.name != "wrong CA" && !errors.Is(err, ErrFailed) {
				t.Errorf("error %v is not ErrFailed", err)
			}
		})
	}
}
