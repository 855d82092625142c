// Package sign signs OMS statements into Sigstore v0.3 bundles, as
// model_signing 1.x does: with an EC private key (the bundle carries a key
// hint), with a private key and its certificate chain, or keyless with
// Sigstore (Fulcio certificate, Rekor entry, RFC 3161 timestamp).
package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/youmark/pkcs8"
)

// MaxKeyFileSize bounds key and certificate files.
const MaxKeyFileSize = 1 << 20

// ErrPassword reports a missing or wrong password for an encrypted key.
var ErrPassword = errors.New("encrypted private key: missing or wrong password")

// ParsePrivateKey reads an EC private key (P-256, P-384 or P-521) from PEM:
// SEC1 "EC PRIVATE KEY", PKCS#8 "PRIVATE KEY", PKCS#8 "ENCRYPTED PRIVATE
// KEY", or a legacy encrypted PEM (Proc-Type header). Text before or
// between PEM blocks (certtool dumps) is skipped.
func ParsePrivateKey(data, password []byte) (*ecdsa.PrivateKey, error) {
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("private key file of %d bytes is too large", len(data))
	}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key block found")
		}
		var key any
		var err error
		switch block.Type {
		case "EC PRIVATE KEY", "PRIVATE KEY":
			der := block.Bytes
			//lint:ignore SA1019 legacy encrypted PEM is still what OpenSSL 1.x writes.
			if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck
				if len(password) == 0 {
					return nil, ErrPassword
				}
				der, err = x509.DecryptPEMBlock(block, password) //nolint:staticcheck
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrPassword, err)
				}
			}
			if block.Type == "EC PRIVATE KEY" {
				key, err = x509.ParseECPrivateKey(der)
			} else {
				key, err = x509.ParsePKCS8PrivateKey(der)
			}
		case "ENCRYPTED PRIVATE KEY":
			if len(password) == 0 {
				return nil, ErrPassword
			}
			key, err = pkcs8.ParsePKCS8PrivateKey(block.Bytes, password)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrPassword, err)
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T; only elliptic curve keys (P-256, P-384, P-521) are supported", key)
		}
		if _, err := curveHash(ec.Curve); err != nil {
			return nil, err
		}
		return ec, nil
	}
}

// ParsePublicKey reads an EC public key from the first "PUBLIC KEY" PEM
// block (text around it is skipped) or from DER.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("public key file of %d bytes is too large", len(data))
	}
	der := []byte(nil)
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "PUBLIC KEY" {
			der = block.Bytes
			break
		}
	}
	if der == nil {
		der = data
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T; only elliptic curve keys (P-256, P-384, P-521) are supported", key)
	}
	if _, err := curveHash(ec.Curve); err != nil {
		return nil, err
	}
	return ec, nil
}

// curveHash is the hash model_signing pairs with each curve.
func curveHash(c elliptic.Curve) (crypto.Hash, error) {
	switch c {
	case elliptic.P256():
		return crypto.SHA256, nil
	case elliptic.P384():
		return crypto.SHA384, nil
	case elliptic.P521():
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("unsupported elliptic curve %s (want P-256, P-384 or P-521)", c.Params().Name)
}

// CurveHash is the hash used with an EC public key (SHA-256 for P-256,
// SHA-384 for P-384, SHA-512 for P-521).
func CurveHash(pub *ecdsa.PublicKey) (crypto.Hash, error) { return curveHash(pub.Curve) }

// PublicKeyPEM is the PEM SubjectPublicKeyInfo encoding, trailing newline
// included, as Python's cryptography writes it.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// KeyHint is model_signing's key hint: hex(sha256(PEM of the public key)).
func KeyHint(pub crypto.PublicKey) (string, error) {
	p, err := PublicKeyPEM(pub)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:]), nil
}

// ecKeypair is a sign.Keypair over a long-lived EC key, whose hint is
// model_signing's.
type ecKeypair struct {
	priv *ecdsa.PrivateKey
	hash crypto.Hash
	hint string
}

func newECKeypair(priv *ecdsa.PrivateKey) (*ecKeypair, error) {
	h, err := curveHash(priv.Curve)
	if err != nil {
		return nil, err
	}
	hint, err := KeyHint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &ecKeypair{priv: priv, hash: h, hint: hint}, nil
}

func (k *ecKeypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	switch k.hash {
	case crypto.SHA384:
		return protocommon.HashAlgorithm_SHA2_384
	case crypto.SHA512:
		return protocommon.HashAlgorithm_SHA2_512
	}
	return protocommon.HashAlgorithm_SHA2_256
}

func (k *ecKeypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	switch k.hash {
	case crypto.SHA384:
		return protocommon.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384
	case crypto.SHA512:
		return protocommon.PublicKeyDetails_PKIX_ECDSA_P521_SHA_512
	}
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

func (k *ecKeypair) GetHint() []byte                { return []byte(k.hint) }
func (k *ecKeypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (k *ecKeypair) GetPublicKey() crypto.PublicKey { return &k.priv.PublicKey }

func (k *ecKeypair) GetPublicKeyPem() (string, error) {
	p, err := PublicKeyPEM(&k.priv.PublicKey)
	return string(p), err
}

func (k *ecKeypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	h := k.hash.New()
	h.Write(data)
	d := h.Sum(nil)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, d)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w", err)
	}
	return sig, d, nil
}

// ParseCertificates reads every "CERTIFICATE" PEM block (text around them
// is skipped), or one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("certificate file of %d bytes is too large", len(data))
	}
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, errors.New("no CERTIFICATE PEM block found")
		}
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}
