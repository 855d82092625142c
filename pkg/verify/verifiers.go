package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/modelseal/modelseal/pkg/sign"
)

// Verifier authenticates a bundle's payload. It returns nil only when the
// DSSE signature is valid and made by a trusted signer.
type Verifier interface {
	Verify(ctx context.Context, b *Bundle) error
}

func curveHashOf(pub *ecdsa.PublicKey) (crypto.Hash, error) { return sign.CurveHash(pub) }

func failed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFailed, fmt.Sprintf(format, args...))
}

// KeyVerifier checks bundles signed with an EC private key.
type KeyVerifier struct {
	// Key is the signer's public key.
	Key *ecdsa.PublicKey
}

// Verify checks the key hint (when the bundle has one; bundles from
// model_signing < 1.1 carry the key itself instead), then the signature
// over the DSSE PAE, falling back to model_signing 0.2's compat encoding.
func (v *KeyVerifier) Verify(_ context.Context, b *Bundle) error {
	if v.Key == nil {
		return errors.New("no public key given")
	}
	if b.Chain != nil {
		// model_signing verifies certificate bundles with the key verifier
		// too when the leaf carries the same key.
		leafKey, ok := b.Chain[0].PublicKey.(*ecdsa.PublicKey)
		if !ok || !leafKey.Equal(v.Key) {
			return failed("the signing certificate's key is not the given public key")
		}
	}
	hint, err := sign.KeyHint(v.Key)
	if err != nil {
		return err
	}
	if b.Hint != "" && b.Hint != hint {
		return failed("key mismatch: the signature's key hint %s is not the given public key's (%s)", b.Hint, hint)
	}
	if err := v.verifyStandard(b); err == nil {
		return nil
	} else if verifyDSSECompat(v.Key, b.PayloadType, b.Payload, b.Signature) {
		return nil
	} else {
		return failed("signature does not verify with the given public key: %v", err)
	}
}

// verifyStandard runs sigstore-go over the bundle with the key as trusted
// material under the bundle's hint.
func (v *KeyVerifier) verifyStandard(b *Bundle) error {
	if b.Chain != nil {
		// sigstore-go looks keys up by hint only in public key bundles.
		if verifyDSSE(v.Key, PAE(b.PayloadType, b.Payload), b.Signature) {
			return nil
		}
		return errors.New("invalid signature")
	}
	h, err := sign.CurveHash(v.Key)
	if err != nil {
		return err
	}
	sv, err := signature.LoadECDSAVerifier(v.Key, h)
	if err != nil {
		return err
	}
	tm := root.NewTrustedPublicKeyMaterialFromMapping(map[string]*root.ExpiringKey{
		b.Hint: root.NewExpiringKey(sv, time.Time{}, time.Time{}),
	})
	sb, err := bundle.NewBundle(b.PB)
	if err != nil {
		return err
	}
	sc, err := sb.SignatureContent()
	if err != nil {
		return err
	}
	vc, err := sb.VerificationContent()
	if err != nil {
		return err
	}
	return sgverify.VerifySignature(sc, vc, tm)
}

// CertificateVerifier checks bundles signed with a certificate chain.
type CertificateVerifier struct {
	// Roots are the trusted CA certificates.
	Roots []*x509.Certificate
	// Time is when the chain must be valid; the zero value means now.
	Time time.Time
}

// Verify validates leaf + bundle intermediates up to one of Roots at Time,
// requires the leaf to allow digitalSignature or codeSigning, then checks
// the DSSE signature with the leaf's key.
func (v *CertificateVerifier) Verify(_ context.Context, b *Bundle) error {
	if len(v.Roots) == 0 {
		return errors.New("no CA certificates given")
	}
	if len(b.Chain) == 0 {
		return failed("the bundle has no certificate (signed with a key? use the public key)")
	}
	leaf := b.Chain[0]
	roots := x509.NewCertPool()
	for _, r := range v.Roots {
		roots.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range b.Chain[1:] {
		inter.AddCert(c)
	}
	at := v.Time
	if at.IsZero() {
		at = time.Now()
	}
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return failed("signing certificate %q is not valid at %s (valid %s to %s)", leaf.Subject, at.UTC().Format(time.RFC3339),
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return failed("certificate chain: %v", err)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 && !hasEKU(leaf, x509.ExtKeyUsageCodeSigning) {
		return failed("signing certificate %q allows neither digitalSignature nor codeSigning", leaf.Subject)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return failed("signing certificate key is %T, want an elliptic curve key", leaf.PublicKey)
	}
	if err := verifyCertSignature(b, pub); err == nil {
		return nil
	} else if verifyDSSECompat(pub, b.PayloadType, b.Payload, b.Signature) {
		return nil
	} else {
		return failed("signature does not verify with the signing certificate: %v", err)
	}
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

// verifyCertSignature checks the DSSE signature with the leaf's key through
// sigstore-go (the chain itself was checked with crypto/x509, since
// sigstore-go's full verifier refuses leaves without a SAN). When
// sigstore-go refuses the chain's shape, the leaf's key is used directly.
func verifyCertSignature(b *Bundle, pub *ecdsa.PublicKey) error {
	sb, err := bundle.NewBundle(b.PB, bundle.AllowCertificateChain())
	var vc sgverify.VerificationContent
	if err == nil {
		vc, err = sb.VerificationContent()
	}
	if err != nil {
		if verifyDSSE(pub, PAE(b.PayloadType, b.Payload), b.Signature) {
			return nil
		}
		return errors.New("invalid signature")
	}
	sc, err := sb.SignatureContent()
	if err != nil {
		return err
	}
	return sgverify.VerifySignature(sc, vc, nil)
}

//go:embed publicgood/trusted_root.json
var publicGoodTrustedRoot []byte

// PublicGoodTrustedRoot is the Sigstore public-good trusted root embedded
// in the binary (see publicgood/README.md for its origin and limits).
func PublicGoodTrustedRoot() (*root.TrustedRoot, error) {
	tr, err := root.NewTrustedRootFromJSON(publicGoodTrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("embedded public-good trusted root: %w", err)
	}
	return tr, nil
}

// SigstoreVerifier checks keyless bundles: Fulcio certificate chain, SCT,
// Rekor entry, timestamps, and the signer's identity and OIDC issuer.
type SigstoreVerifier struct {
	// Trusted is the trusted root; PublicGoodTrustedRoot() when nil.
	Trusted root.TrustedMaterial
	// Identity is the exact certificate SAN (email or URI); IdentityRegex
	// is a regular expression alternative. One of them is required.
	Identity, IdentityRegex string
	// Issuer is the exact OIDC issuer; IssuerRegex is the alternative.
	// One of them is required.
	Issuer, IssuerRegex string
	// NoSCT drops the signed certificate timestamp requirement, for
	// private instances without a certificate transparency log.
	NoSCT bool
}

func (v *SigstoreVerifier) verifier() (*sgverify.Verifier, sgverify.PolicyBuilder, error) {
	if v.Identity == "" && v.IdentityRegex == "" {
		return nil, sgverify.PolicyBuilder{}, errors.New("keyless verification needs an identity (or an identity regex)")
	}
	if v.Issuer == "" && v.IssuerRegex == "" {
		return nil, sgverify.PolicyBuilder{}, errors.New("keyless verification needs an identity provider (or an issuer regex)")
	}
	for _, re := range []string{v.IdentityRegex, v.IssuerRegex} {
		if re != "" {
			if _, err := regexp.Compile(re); err != nil {
				return nil, sgverify.PolicyBuilder{}, fmt.Errorf("regular expression %q: %w", re, err)
			}
		}
	}
	tm := v.Trusted
	if tm == nil {
		tr, err := PublicGoodTrustedRoot()
		if err != nil {
			return nil, sgverify.PolicyBuilder{}, err
		}
		tm = tr
	}
	vopts := []sgverify.VerifierOption{
		sgverify.WithTransparencyLog(1),
		sgverify.WithObserverTimestamps(1),
		sgverify.WithoutStatementPredicate(),
	}
	if !v.NoSCT {
		vopts = append(vopts, sgverify.WithSignedCertificateTimestamps(1))
	}
	sv, err := sgverify.NewVerifier(tm, vopts...)
	if err != nil {
		return nil, sgverify.PolicyBuilder{}, fmt.Errorf("trusted root: %w", err)
	}
	id, err := sgverify.NewShortCertificateIdentity(v.Issuer, anchor(v.IssuerRegex), v.Identity, anchor(v.IdentityRegex))
	if err != nil {
		return nil, sgverify.PolicyBuilder{}, err
	}
	return sv, sgverify.NewPolicy(sgverify.WithoutArtifactUnsafe(), sgverify.WithCertificateIdentity(id)), nil
}

// anchor makes a regular expression match the whole value (sigstore-go's
// matchers search, cosign's --certificate-identity-regexp users expect a
// full match).
func anchor(re string) string {
	if re == "" {
		return ""
	}
	return "^(?:" + re + ")$"
}

// Verify implements Verifier.
func (v *SigstoreVerifier) Verify(_ context.Context, b *Bundle) error {
	if len(b.Chain) == 0 {
		return failed("the bundle has no certificate: not a keyless (Sigstore) signature")
	}
	sb, err := bundle.NewBundle(b.PB)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBundle, err)
	}
	return v.VerifyEntity(sb)
}

// VerifyEntity verifies any sigstore-go signed entity (a bundle, or a test
// entity from sigstore-go's virtual Sigstore).
func (v *SigstoreVerifier) VerifyEntity(e sgverify.SignedEntity) error {
	sv, policy, err := v.verifier()
	if err != nil {
		return err
	}
	if _, err := sv.Verify(e, policy); err != nil {
		return failed("keyless signature: %v", err)
	}
	return nil
}
