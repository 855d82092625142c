package verify

import (
	"context"
	"errors"
	"fmt"

	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
)

// Options controls Model.
type Options struct {
	// Verifier authenticates the bundle (required).
	Verifier Verifier
	// IgnorePaths are extra paths, relative to the model, to leave out
	// (added to the ones the signature records and the git defaults).
	IgnorePaths []string
	// IgnoreUnsigned accepts files the signature does not list (only the
	// signed files are hashed).
	IgnoreUnsigned bool
	// SignaturePath is left out of the listing when it lies in the model.
	SignaturePath string
	// Workers and Progress are passed to the hasher.
	Workers  int
	Progress func(done, total int, size int64)
}

// Result is a successful verification.
type Result struct {
	// Signed is the authenticated manifest.
	Signed *oms.Manifest
	// Hashed is the model as found on disk.
	Hashed *oms.Hashed
	// Diff is empty on success.
	Diff *oms.Diff
}

// MismatchError lists what differs between the signature and the model.
type MismatchError struct{ Diff *oms.Diff }

func (e *MismatchError) Error() string {
	return "model does not match its signature: " + e.Diff.String()
}

// Unwrap makes errors.Is(err, ErrFailed) true.
func (e *MismatchError) Unwrap() error { return ErrFailed }

// Model verifies the model at modelPath against the bundle: the signature
// and signer first, then every file. Errors wrap ErrFailed for a failed
// verification and ErrBundle for an unreadable signature; other errors are
// about reading the model.
func Model(ctx context.Context, modelPath string, bundleJSON []byte, opts Options) (*Result, error) {
	if opts.Verifier == nil {
		return nil, errors.New("no verifier configured")
	}
	b, err := ParseBundle(bundleJSON)
	if err != nil {
		return nil, err
	}
	if err := opts.Verifier.Verify(ctx, b); err != nil {
		return nil, err
	}
	signed, err := oms.ParseStatement(b.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: signed statement: %w", ErrFailed, err)
	}
	return Compare(ctx, modelPath, signed, opts)
}

// Compare hashes the model as the authenticated manifest says it was
// hashed and compares file by file.
func Compare(ctx context.Context, modelPath string, signed *oms.Manifest, opts Options) (*Result, error) {
	fo := modelfs.Options{Ignore: append([]string{}, opts.IgnorePaths...)}
	for _, p := range signed.Serialization.IgnorePaths {
		c, err := modelfs.CleanName(p)
		if err != nil || c == "." {
			return nil, fmt.Errorf("%w: signed ignore path %q: not a path inside the model", ErrFailed, p)
		}
		fo.Ignore = append(fo.Ignore, c)
	}
	if signed.Serialization.AllowSymlinks {
		fo.Symlinks = modelfs.FollowSymlinks
	}
	if s := oms.SignatureIgnore(modelPath, opts.SignaturePath); s != "" {
		fo.Ignore = append(fo.Ignore, s)
	}
	set, err := modelfs.Open(modelPath, fo)
	if err != nil {
		if errors.Is(err, modelfs.ErrSymlink) {
			return nil, fmt.Errorf("%w: %w", ErrFailed, err)
		}
		return nil, err
	}
	single := ""
	if set.SingleFile {
		single = set.Name
	}
	signedFiles, err := signed.Files(single)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	if opts.IgnoreUnsigned {
		kept := set.Files[:0:0]
		for _, f := range set.Files {
			if signedFiles[f.Name] {
				kept = append(kept, f)
			}
		}
		set.Files = kept
	}
	res, err := digest.Compute(ctx, set, digest.Options{
		Algorithm: signed.Serialization.HashType,
		ShardSize: signed.Serialization.ShardSize,
		Workers:   opts.Workers,
		Progress:  opts.Progress,
	})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", modelPath, err)
	}
	actual := oms.New(set, res, signed.Serialization.AllowSymlinks, set.Ignored)
	diff, err := oms.Compare(signed, actual, oms.CompareOptions{IgnoreUnsigned: opts.IgnoreUnsigned, SingleFile: single})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFailed, err)
	}
	r := &Result{Signed: signed, Hashed: &oms.Hashed{Set: set, Digests: res, Manifest: actual}, Diff: diff}
	if !diff.Empty() {
		return r, &MismatchError{Diff: diff}
	}
	return r, nil
}

// ModelEntity verifies a model against a keyless signature that is already
// a sigstore-go signed entity (a bundle fetched from a registry, or a test
// entity from sigstore-go's virtual Sigstore).
func ModelEntity(ctx context.Context, modelPath string, e sgverify.SignedEntity, v *SigstoreVerifier, opts Options) (*Result, error) {
	if err := v.VerifyEntity(e); err != nil {
		return nil, err
	}
	sc, err := e.SignatureContent()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	env := sc.EnvelopeContent()
	if env == nil {
		return nil, fmt.Errorf("%w: not a DSSE envelope", ErrBundle)
	}
	raw := env.RawEnvelope()
	if raw.PayloadType != oms.PayloadType {
		return nil, fmt.Errorf("%w: payload type %q", ErrBundle, raw.PayloadType)
	}
	payload, err := raw.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrBundle, err)
	}
	signed, err := oms.ParseStatement(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: signed statement: %w", ErrFailed, err)
	}
	return Compare(ctx, modelPath, signed, opts)
}
