package sbom

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
)

// CheckSignature verifies a model's OMS signature bundle for the BOM. It
// checks the signature and signer with v, then compares the signed manifest
// with the digests already computed (whole-file SHA-256, as modelseal and
// model_signing sign by default); a signature over other digests (shards,
// BLAKE3) makes it hash the model again the way the signature says.
//
// The returned Signature always describes what was found; Verified is true
// only when everything checked out. The error is non-nil when the bundle is
// unreadable or verification failed (wrapping verify.ErrBundle or
// verify.ErrFailed), and nil when v is nil (no verification material: the
// signature is reported as present and not verified).
func CheckSignature(ctx context.Context, set *modelfs.Set, dg *digest.Result, bundle []byte, file string, v verify.Verifier) (*Signature, error) {
	sig := &Signature{File: file}
	b, err := verify.ParseBundle(bundle)
	if err != nil {
		sig.Detail = err.Error()
		return sig, err
	}
	sig.Method = bundleMethod(b, v)
	describeSigner(sig, b, v)
	if v == nil {
		sig.Detail = "not verified: no verification material given"
		return sig, nil
	}
	if err := v.Verify(ctx, b); err != nil {
		sig.Detail = err.Error()
		return sig, err
	}
	signed, err := oms.ParseStatement(b.Payload)
	if err != nil {
		err = fmt.Errorf("%w: signed statement: %w", verify.ErrFailed, err)
		sig.Detail = err.Error()
		return sig, err
	}
	var diff *oms.Diff
	single := ""
	if set.SingleFile {
		single = set.Name
	}
	if signed.Serialization.HashType == digest.SHA256 && signed.Serialization.ShardSize == 0 && dg != nil && dg.ShardSize == 0 && dg.Algorithm == digest.SHA256 {
		kept, items := filterIgnored(set, dg, signed.Serialization.IgnorePaths)
		actual := oms.New(kept, items, signed.Serialization.AllowSymlinks, kept.Ignored)
		diff, err = oms.Compare(signed, actual, oms.CompareOptions{SingleFile: single})
		if err != nil {
			err = fmt.Errorf("%w: %w", verify.ErrFailed, err)
		}
	} else {
		var r *verify.Result
		r, err = verify.Compare(ctx, set.Root, signed, verify.Options{Verifier: v, SignaturePath: file})
		if r != nil {
			diff = r.Diff
		}
	}
	if err == nil && diff != nil && !diff.Empty() {
		err = &verify.MismatchError{Diff: diff}
	}
	if err != nil {
		sig.Detail = err.Error()
		return sig, err
	}
	sig.Verified = true
	return sig, nil
}

// filterIgnored drops the files a signed manifest ignores.
func filterIgnored(set *modelfs.Set, dg *digest.Result, ignores []string) (*modelfs.Set, *digest.Result) {
	var clean []string
	for _, p := range ignores {
		if c, err := modelfs.CleanName(p); err == nil && c != "." {
			clean = append(clean, c)
		}
	}
	kept := *set
	kept.Files = nil
	items := *dg
	items.Items = nil
	for i, f := range set.Files {
		if slices.ContainsFunc(clean, func(ig string) bool { return f.Name == ig || strings.HasPrefix(f.Name, ig+"/") }) {
			continue
		}
		kept.Files = append(kept.Files, f)
		items.Items = append(items.Items, dg.Items[i])
	}
	return &kept, &items
}

// bundleMethod names the signing method: the verifier's when one is given,
// else guessed from the bundle's shape.
func bundleMethod(b *verify.Bundle, v verify.Verifier) string {
	switch v.(type) {
	case *verify.KeyVerifier:
		return "key"
	case *verify.CertificateVerifier:
		return "certificate"
	case *verify.SigstoreVerifier:
		return "sigstore"
	}
	switch {
	case len(b.Chain) == 0:
		return "key"
	case b.PB != nil && b.PB.GetVerificationMaterial() != nil && len(b.PB.GetVerificationMaterial().GetTlogEntries()) > 0:
		return "sigstore"
	}
	return "certificate"
}

// describeSigner fills in the signer's identity (unauthenticated until the
// verifier has run).
func describeSigner(sig *Signature, b *verify.Bundle, v verify.Verifier) {
	if len(b.Chain) == 0 {
		hint := b.Hint
		if kv, ok := v.(*verify.KeyVerifier); ok && kv.Key != nil {
			if h, err := sign.KeyHint(kv.Key); err == nil {
				hint = h
			}
		}
		if hint != "" {
			sig.Identity = "public key sha256:" + hint
		}
		return
	}
	leaf := b.Chain[0]
	if sig.Method == "sigstore" {
		if s, err := certificate.SummarizeCertificate(leaf); err == nil {
			sig.Identity = s.SubjectAlternativeName
			sig.Issuer = s.Extensions.Issuer
			return
		}
	}
	sig.Identity = certIdentity(leaf)
}

// certIdentity names a certificate's subject: its DN, and its first email
// or URI SAN when it has one.
func certIdentity(c *x509.Certificate) string {
	id := c.Subject.String()
	var san string
	switch {
	case len(c.EmailAddresses) > 0:
		san = c.EmailAddresses[0]
	case len(c.URIs) > 0:
		san = c.URIs[0].String()
	}
	if san != "" {
		if id == "" {
			return san
		}
		return id + " (" + san + ")"
	}
	return id
}
