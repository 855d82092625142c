package verify

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/modelseal/modelseal/pkg/oms"
)

// TestKeylessVirtualSigstore signs a model's statement with sigstore-go's
// virtual Sigstore (Fulcio CA, CT log, Rekor, TSA, all in process) and
// verifies it offline against that trusted material.
func TestKeylessVirtualSigstore(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	const (
		identity = "https://github.com/acme/models/.github/workflows/release.yml@refs/heads/main"
		issuer   = "https://token.actions.githubusercontent.com"
	)
	model := makeModel(t)
	h, err := oms.HashModel(context.Background(), model, oms.HashOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Manifest.Statement()
	if err != nil {
		t.Fatal(err)
	}
	entity, err := vs.Attest(identity, issuer, st)
	if err != nil {
		t.Fatal(err)
	}
	// Signed while the short-lived certificate was not valid.
	late, err := vs.AttestAtTime(identity, issuer, st, time.Now().Add(24*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		v      *SigstoreVerifier
		entity any
		tamper func(t *testing.T)
		want   string
	}{
		{name: "exact identity", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: identity, Issuer: issuer}},
		{name: "regex identity", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, IdentityRegex: `https://github\.com/acme/.*`, Issuer: issuer}},
		{name: "regex issuer", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: identity, IssuerRegex: `https://token\.actions\..*`}},
		{name: "wrong identity", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: "https://github.com/evil/x", Issuer: issuer}, want: `expected SAN value "https://github.com/evil/x"`},
		{name: "wrong issuer", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: identity, Issuer: "https://accounts.google.com"}, want: `expected issuer value "https://accounts.google.com"`},
		{name: "partial regex does not match", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, IdentityRegex: `acme`, Issuer: issuer}, want: "expected SAN value to match regex"},
		{name: "public-good root does not trust the virtual log", v: &SigstoreVerifier{Identity: identity, Issuer: issuer}, want: "transparency log"},
		{name: "SCT required by default", v: &SigstoreVerifier{Trusted: vs, Identity: identity, Issuer: issuer}, want: "signed certificate timestamp"},
		{name: "log entry outside the certificate's validity", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: identity, Issuer: issuer}, entity: late, want: "transparency log"},
		{name: "model changed", v: &SigstoreVerifier{Trusted: vs, NoSCT: true, Identity: identity, Issuer: issuer}, tamper: func(t *testing.T) {
			write(t, filepath.Join(model, "config.json"), "{}")
		}, want: "changed: config.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tamper != nil {
				tt.tamper(t)
			}
			e := entity
			if tt.entity != nil {
				e = tt.entity.(*ca.TestEntity)
			}
			res, err := ModelEntity(context.Background(), model, e, tt.v, Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Hashed.Set.Files) != len(h.Set.Files) {
					t.Errorf("%d files", len(res.Hashed.Set.Files))
				}
				return
			}
			if err == nil || !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
