// Package verify checks OMS model signatures (Sigstore bundles written by
// modelseal or by model_signing 0.2 to 1.x) and compares the signed
// manifest with the model on disk. It fails closed: any doubt is an error,
// and a mismatch names every changed, missing and extra file.
package verify

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/modelseal/modelseal/pkg/oms"
)

// MaxBundleSize bounds a signature file (a statement of
// oms.MaxStatementSize, base64-encoded, plus certificates and log entries).
const MaxBundleSize = oms.MaxStatementSize/3*4 + 16<<20

// ErrBundle wraps every bundle decoding error (an unreadable input).
var ErrBundle = errors.New("malformed signature bundle")

// ErrFailed wraps every verification failure: bad signature, untrusted
// key or certificate, wrong identity, or a model that differs.
var ErrFailed = errors.New("verification failed")

// Bundle is a decoded signature file.
type Bundle struct {
	// PB is the protobuf bundle, normalised: the old publicKey shape
	// (rawBytes, keyDetails) is reduced to a hint.
	PB *protobundle.Bundle
	// PayloadType and Payload come from the DSSE envelope (not yet
	// authenticated).
	PayloadType string
	Payload     []byte
	// Signature is the single DSSE signature.
	Signature []byte
	// Hint is verificationMaterial.publicKey.hint ("" when absent).
	Hint string
	// Chain is the certificate chain (leaf first), from
	// x509CertificateChain or certificate; nil for key bundles.
	Chain []*x509.Certificate
}

func bundleErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBundle, fmt.Sprintf(format, args...))
}

// ParseBundle decodes a Sigstore bundle holding a DSSE envelope with an
// in-toto statement, accepting the shapes model_signing 0.2 to 1.x wrote:
// publicKey with rawBytes/keyDetails, x509CertificateChain in a v0.3
// bundle, an empty tlogEntries list.
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, bundleErr("%d bytes exceeds the %d byte limit", len(data), MaxBundleSize)
	}
	pb := &protobundle.Bundle{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, pb); err != nil {
		return nil, bundleErr("%v", err)
	}
	switch pb.GetMediaType() {
	case "application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle+json;version=0.3",
		"application/vnd.dev.sigstore.bundle+json;version=0.2", "application/vnd.dev.sigstore.bundle+json;version=0.1":
	default:
		return nil, bundleErr("media type %q is not a Sigstore bundle v0.1-v0.3", pb.GetMediaType())
	}
	env := pb.GetDsseEnvelope()
	if env == nil {
		return nil, bundleErr("no DSSE envelope (model signatures are DSSE in-toto statements)")
	}
	if n := len(env.GetSignatures()); n != 1 {
		return nil, bundleErr("%d DSSE signatures, want exactly one", n)
	}
	if env.GetPayloadType() != oms.PayloadType {
		return nil, bundleErr("payload type %q, want %q", env.GetPayloadType(), oms.PayloadType)
	}
	b := &Bundle{
		PB:          pb,
		PayloadType: env.GetPayloadType(),
		Payload:     env.GetPayload(),
		Signature:   env.GetSignatures()[0].GetSig(),
	}
	if len(b.Signature) == 0 {
		return nil, bundleErr("empty DSSE signature")
	}
	vm := pb.GetVerificationMaterial()
	if vm == nil {
		return nil, bundleErr("no verification material")
	}
	switch c := vm.GetContent().(type) {
	case *protobundle.VerificationMaterial_PublicKey:
		b.Hint = c.PublicKey.GetHint()
	case *protobundle.VerificationMaterial_Certificate:
		cert, err := x509.ParseCertificate(c.Certificate.GetRawBytes())
		if err != nil {
			return nil, bundleErr("certificate: %v", err)
		}
		b.Chain = []*x509.Certificate{cert}
	case *protobundle.VerificationMaterial_X509CertificateChain:
		certs := c.X509CertificateChain.GetCertificates()
		if len(certs) == 0 || len(certs) > 10 {
			return nil, bundleErr("certificate chain of %d certificates", len(certs))
		}
		for i, raw := range certs {
			cert, err := x509.ParseCertificate(raw.GetRawBytes())
			if err != nil {
				return nil, bundleErr("certificate %d of the chain: %v", i, err)
			}
			b.Chain = append(b.Chain, cert)
		}
	default:
		return nil, bundleErr("no public key or certificate in the verification material")
	}
	return b, nil
}

// PAE is the DSSE pre-authentication encoding.
func PAE(payloadType string, payload []byte) []byte {
	out := []byte("DSSEv1 " + strconv.Itoa(len(payloadType)) + " " + payloadType + " " + strconv.Itoa(len(payload)) + " ")
	return append(out, payload...)
}

// PAECompat is the encoding model_signing 0.2 signed by mistake: "DSSEV1",
// and the payload written as a Python bytes literal (repr).
func PAECompat(payloadType string, payload []byte) []byte {
	out := []byte("DSSEV1 " + strconv.Itoa(len(payloadType)) + " " + payloadType + " " + strconv.Itoa(len(payload)) + " ")
	return append(out, pythonBytesRepr(payload)...)
}

// pythonBytesRepr is Python's repr() of a bytes object.
func pythonBytesRepr(b []byte) []byte {
	quote := byte('\'')
	if bytesContains(b, '\'') && !bytesContains(b, '"') {
		quote = '"'
	}
	out := make([]byte, 0, len(b)+3)
	out = append(out, 'b', quote)
	const hexdig = "0123456789abcdef"
	for _, c := range b {
		switch {
		case c == quote || c == '\\':
			out = append(out, '\\', c)
		case c == '\t':
			out = append(out, '\\', 't')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c < 0x20 || c >= 0x7f:
			out = append(out, '\\', 'x', hexdig[c>>4], hexdig[c&15])
		default:
			out = append(out, c)
		}
	}
	return append(out, quote)
}

func bytesContains(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// verifyDSSECompat checks a signature over the v0.2 compat PAE, with the
// key's own hash and with SHA-256 (what v0.2 used on every curve).
func verifyDSSECompat(pub *ecdsa.PublicKey, payloadType string, payload, sig []byte) bool {
	msg := PAECompat(payloadType, payload)
	if verifyDSSE(pub, msg, sig) {
		return true
	}
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(pub, d[:], sig)
}

// verifyDSSE checks an ECDSA signature over msg with the key's own hash.
func verifyDSSE(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	h, err := curveHashOf(pub)
	if err != nil {
		return false
	}
	hh := h.New()
	hh.Write(msg)
	return ecdsa.VerifyASN1(pub, hh.Sum(nil), sig)
}
