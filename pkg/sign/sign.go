package sign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgsign "github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/modelseal/modelseal/pkg/oms"
)

// Signer turns an in-toto statement into a Sigstore bundle.
type Signer interface {
	// Sign signs statement (the DSSE payload) and returns the bundle.
	Sign(ctx context.Context, statement []byte) (*protobundle.Bundle, error)
}

// KeySigner signs with an EC private key; the bundle's verification
// material is the key hint hex(sha256(PEM public key)).
type KeySigner struct{ kp *ecKeypair }

// NewKeySigner returns a signer for a P-256, P-384 or P-521 key.
func NewKeySigner(priv *ecdsa.PrivateKey) (*KeySigner, error) {
	kp, err := newECKeypair(priv)
	if err != nil {
		return nil, err
	}
	return &KeySigner{kp: kp}, nil
}

// Sign implements Signer.
func (s *KeySigner) Sign(ctx context.Context, statement []byte) (*protobundle.Bundle, error) {
	return sgsign.Bundle(&sgsign.DSSEData{Data: statement, PayloadType: oms.PayloadType}, s.kp, sgsign.BundleOptions{Context: ctx})
}

// CertificateSigner signs with a private key and puts its certificate chain
// (leaf first, then intermediates; never the root) in the bundle.
type CertificateSigner struct {
	kp    *ecKeypair
	chain [][]byte
}

// NewCertificateSigner checks that leaf certifies priv's public key. Self
// signed certificates among intermediates (a root passed by mistake) are
// left out, as the format wants.
func NewCertificateSigner(priv *ecdsa.PrivateKey, leaf *x509.Certificate, intermediates []*x509.Certificate) (*CertificateSigner, error) {
	kp, err := newECKeypair(priv)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&priv.PublicKey) {
		return nil, errors.New("the signing certificate's public key does not match the private key")
	}
	chain := [][]byte{leaf.Raw}
	for _, c := range intermediates {
		if isSelfSigned(c) {
			continue
		}
		chain = append(chain, c.Raw)
	}
	return &CertificateSigner{kp: kp, chain: chain}, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

type staticChain [][]byte

func (c staticChain) GetCertificateChain(context.Context, sgsign.Keypair, *sgsign.CertificateProviderOptions) ([][]byte, error) {
	return c, nil
}

// Sign implements Signer.
func (s *CertificateSigner) Sign(ctx context.Context, statement []byte) (*protobundle.Bundle, error) {
	return sgsign.Bundle(&sgsign.DSSEData{Data: statement, PayloadType: oms.PayloadType}, s.kp, sgsign.BundleOptions{
		Context:                  ctx,
		CertificateChainProvider: staticChain(s.chain),
	})
}

// SigstoreOptions configures keyless signing.
type SigstoreOptions struct {
	// IDToken is the OIDC identity token sent to Fulcio.
	IDToken string
	// SigningConfig names the Fulcio, Rekor and timestamp services;
	// PublicGoodSigningConfig() by default.
	SigningConfig *root.SigningConfig
	// TrustedMaterial, when set, verifies the new bundle before returning.
	TrustedMaterial root.TrustedMaterial
	// RekorVersions are the Rekor API versions to pick from; {1} by default,
	// which the embedded public-good trusted root can verify.
	RekorVersions []uint32
	// NoTimestamp skips the timestamp authorities.
	NoTimestamp bool
	// Timeout of each network request (30 s by default).
	Timeout time.Duration
}

// SigstoreSigner signs keylessly: an ephemeral P-256 key, a Fulcio
// certificate for the identity token, a Rekor entry and RFC 3161
// timestamps.
type SigstoreSigner struct{ opts SigstoreOptions }

// NewSigstoreSigner checks the options.
func NewSigstoreSigner(opts SigstoreOptions) (*SigstoreSigner, error) {
	if opts.IDToken == "" {
		return nil, errors.New("keyless signing needs an OIDC identity token")
	}
	if opts.SigningConfig == nil {
		sc, err := PublicGoodSigningConfig()
		if err != nil {
			return nil, err
		}
		opts.SigningConfig = sc
	}
	if len(opts.RekorVersions) == 0 {
		opts.RekorVersions = []uint32{1}
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	return &SigstoreSigner{opts: opts}, nil
}

// BundleOptions selects the services of the signing configuration.
func (s *SigstoreSigner) BundleOptions(ctx context.Context, now time.Time) (sgsign.BundleOptions, error) {
	sc := s.opts.SigningConfig
	bo := sgsign.BundleOptions{Context: ctx, TrustedRoot: s.opts.TrustedMaterial}
	fulcio, err := root.SelectService(sc.FulcioCertificateAuthorityURLs(), sgsign.FulcioAPIVersions, now)
	if err != nil {
		return bo, fmt.Errorf("signing config: Fulcio: %w", err)
	}
	bo.CertificateProvider = sgsign.NewFulcio(&sgsign.FulcioOptions{BaseURL: fulcio.URL, Timeout: s.opts.Timeout, Retries: 1})
	bo.CertificateProviderOptions = &sgsign.CertificateProviderOptions{IDToken: s.opts.IDToken}
	rekors, err := root.SelectServices(sc.RekorLogURLs(), sc.RekorLogURLsConfig(), s.opts.RekorVersions, now)
	if err != nil {
		return bo, fmt.Errorf("signing config: Rekor: %w", err)
	}
	for _, r := range rekors {
		bo.TransparencyLogs = append(bo.TransparencyLogs, sgsign.NewRekor(&sgsign.RekorOptions{
			BaseURL: r.URL, Timeout: 3 * s.opts.Timeout, Retries: 1, Version: r.MajorAPIVersion,
		}))
	}
	if !s.opts.NoTimestamp && len(sc.TimestampAuthorityURLs()) > 0 {
		tsas, err := root.SelectServices(sc.TimestampAuthorityURLs(), sc.TimestampAuthorityURLsConfig(), sgsign.TimestampAuthorityAPIVersions, now)
		if err != nil {
			return bo, fmt.Errorf("signing config: timestamp authority: %w", err)
		}
		for _, t := range tsas {
			bo.TimestampAuthorities = append(bo.TimestampAuthorities, sgsign.NewTimestampAuthority(&sgsign.TimestampAuthorityOptions{
				URL: t.URL, Timeout: s.opts.Timeout, Retries: 1,
			}))
		}
	}
	return bo, nil
}

// Sign implements Signer.
func (s *SigstoreSigner) Sign(ctx context.Context, statement []byte) (*protobundle.Bundle, error) {
	bo, err := s.BundleOptions(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	kp, err := sgsign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	b, err := sgsign.Bundle(&sgsign.DSSEData{Data: statement, PayloadType: oms.PayloadType}, kp, bo)
	if err != nil {
		return nil, fmt.Errorf("keyless signing: %w", err)
	}
	return b, nil
}

// MarshalBundle encodes a bundle as compact JSON with a stable layout
// (protojson randomises its whitespace on purpose).
func MarshalBundle(b *protobundle.Bundle) ([]byte, error) {
	raw, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding bundle: %w", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, fmt.Errorf("encoding bundle: %w", err)
	}
	return out.Bytes(), nil
}

// Model signs a manifest: it encodes the statement, signs it, and returns
// the bundle JSON to write to model.sig.
func Model(ctx context.Context, m *oms.Manifest, s Signer) ([]byte, error) {
	st, err := m.Statement()
	if err != nil {
		return nil, err
	}
	b, err := s.Sign(ctx, st)
	if err != nil {
		return nil, err
	}
	return MarshalBundle(b)
}
