package sbom

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
)

const keys = "../testdata/model-signing/keys/certificate"

func readKey(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(keys, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// signFixture copies the fixture, signs it with the test key (model.sig
// inside, as modelseal sign does) and returns the folder and the bundle.
func signFixture(t *testing.T, opts oms.HashOptions) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	for name, data := range fixtureFiles(t) {
		write(t, dir, name, data)
	}
	priv, err := sign.ParsePrivateKey(readKey(t, "signing-key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.NewKeySigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	opts.SignaturePath = filepath.Join(dir, "model.sig")
	h, err := oms.HashModel(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := sign.Model(context.Background(), h.Manifest, signer)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "model.sig", string(bundle))
	return dir, bundle
}

// TestSignature checks a key signature against the BOM's own digests and
// records it as properties; wrong keys, changed files and missing material
// are reported as not verified.
func TestSignature(t *testing.T) {
	pub, err := sign.ParsePublicKey(readKey(t, "signing-key-pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		hash     oms.HashOptions
		verifier verify.Verifier
		tamper   bool
		verified bool
		errIs    error
		detail   string
	}{
		{"key verifies", oms.HashOptions{}, &verify.KeyVerifier{Key: pub}, false, true, nil, ""},
		{"sharded blake3 signature rehashes", oms.HashOptions{Digest: digest.Options{Algorithm: digest.BLAKE3, ShardSize: 100}}, &verify.KeyVerifier{Key: pub}, false, true, nil, ""},
		{"no material", oms.HashOptions{}, nil, false, false, nil, "no verification material"},
		{"wrong key", oms.HashOptions{}, &verify.KeyVerifier{Key: &otherPriv.PublicKey}, false, false, verify.ErrFailed, "verification failed"},
		{"changed file", oms.HashOptions{}, &verify.KeyVerifier{Key: pub}, true, false, verify.ErrFailed, "changed: config.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, bundle := signFixture(t, c.hash)
			if c.tamper {
				write(t, dir, "config.json", `{"model_type":"changed"}`)
			}
			set, err := modelfs.Open(dir, modelfs.Options{Ignore: []string{"model.sig"}})
			if err != nil {
				t.Fatal(err)
			}
			dg, _ := digest.Compute(context.Background(), set, digest.Options{})
			sig, err := CheckSignature(context.Background(), set, dg, bundle, filepath.Join(dir, "model.sig"), c.verifier)
			if (c.errIs == nil) != (err == nil) || (c.errIs != nil && !errors.Is(err, c.errIs)) {
				t.Fatalf("error %v, want %v", err, c.errIs)
			}
			if sig.Verified != c.verified || sig.Method != "key" || !strings.HasPrefix(sig.Identity, "public key sha256:") {
				t.Errorf("signature %+v", sig)
			}
			if !strings.Contains(sig.Detail, c.detail) {
				t.Errorf("detail %q, want %q", sig.Detail, c.detail)
			}
			res, err := Build(context.Background(), Input{Set: set, Digests: dg, Signature: sig}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			encodeValid(t, res.BOM)
			props := res.BOM.Metadata.Component.Properties
			if v, _ := prop(props, PropSignatureVerified); v != map[bool]string{true: "true", false: "false"}[c.verified] {
				t.Errorf("%s = %q", PropSignatureVerified, v)
			}
			if v, _ := prop(props, PropSignatureMethod); v != "key" {
				t.Errorf("%s = %q", PropSignatureMethod, v)
			}
			if v, _ := prop(props, PropSignatureIdentity); v != sig.Identity {
				t.Errorf("%s = %q", PropSignatureIdentity, v)
			}
		})
	}
	t.Run("garbage bundle", func(t *testing.T) {
		set, _ := modelfs.Open(hfFixture, modelfs.Options{})
		dg, _ := digest.Compute(context.Background(), set, digest.Options{})
		if _, err := CheckSignature(context.Background(), set, dg, []byte("{}"), "model.sig", nil); !errors.Is(err, verify.ErrBundle) {
			t.Errorf("error %v", err)
		}
	})
}
