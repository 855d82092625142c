package oci

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/verify"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Verifier authenticates signatures (required).
	Verifier verify.Verifier
	// IgnorePaths are model-relative paths whose files are left out (and
	// never written by Pull).
	IgnorePaths []string
	// IgnoreUnsigned accepts files the signature does not list; they are
	// left out (never written by Pull).
	IgnoreUnsigned bool
}

// Verified is an artifact whose signature verified.
type Verified struct {
	// Artifact is the model manifest.
	Artifact *Artifact
	// Signed is the authenticated OMS manifest.
	Signed *oms.Manifest
	// Signature is the referrer that verified.
	Signature Referrer
	// Skipped lists files left out: ignored paths and, with
	// IgnoreUnsigned, files the signature does not list.
	Skipped map[string]bool
	// NeedsContent is true when the layer digests are not the signed file
	// digests (tar layers, or a signature made with shards or another
	// hash): the files must then be hashed after download (Pull does).
	NeedsContent bool
	// Skips lists referrers that were not usable, for diagnostics.
	Skips []error
}

// ignoredBy reports whether name is an ignore path or lies below one.
func ignoredBy(name string, ignores []string) bool {
	for _, ig := range ignores {
		if name == ig || strings.HasPrefix(name, ig+"/") {
			return true
		}
	}
	return false
}

// signedIgnores returns the signature's ignore paths plus the user's,
// cleaned.
func signedIgnores(signed *oms.Manifest, user []string) ([]string, error) {
	var out []string
	for _, p := range append(append([]string{}, signed.Serialization.IgnorePaths...), user...) {
		c, err := modelfs.CleanName(p)
		if err != nil || c == "." {
			return nil, fmt.Errorf("%w: ignore path %q: not a path inside the model", verify.ErrFailed, p)
		}
		out = append(out, c)
	}
	return out, nil
}

// CompareLayers checks a signed OMS manifest against the raw layers of an
// artifact: for every file path, the signed SHA-256 must equal the layer
// digest; any changed, missing or extra file fails (extra files are
// accepted with opts.IgnoreUnsigned and then listed in skipped). No blob is
// read. The signature must use whole-file SHA-256 digests.
func CompareLayers(signed *oms.Manifest, a *Artifact, opts VerifyOptions) (diff *oms.Diff, skipped map[string]bool, err error) {
	if signed.Serialization.Method != oms.MethodFiles || signed.Serialization.HashType != digest.SHA256 {
		return nil, nil, fmt.Errorf("the signature hashes files with %s/%s, not whole-file sha256: the blobs must be downloaded and hashed",
			signed.Serialization.Method, signed.Serialization.HashType)
	}
	if !a.AllRaw() {
		return nil, nil, errors.New("the artifact has tar layers: the blobs must be downloaded and hashed")
	}
	ignores, err := signedIgnores(signed, opts.IgnorePaths)
	if err != nil {
		return nil, nil, err
	}
	single := ""
	for _, r := range signed.Resources {
		if r.Name == "." && len(a.Layers) == 1 {
			single = a.Layers[0].Path
		}
	}
	signedFiles, err := signed.Files(single)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", verify.ErrFailed, err)
	}
	actual := &oms.Manifest{
		ModelName:     signed.ModelName,
		Serialization: oms.Serialization{Method: oms.MethodFiles, HashType: digest.SHA256},
	}
	skipped = map[string]bool{}
	for _, l := range a.Layers {
		if ignoredBy(l.Path, ignores) || (opts.IgnoreUnsigned && !signedFiles[l.Path]) {
			skipped[l.Path] = true
			continue
		}
		sum, err := hex.DecodeString(l.Descriptor.Digest.Encoded())
		if err != nil || len(sum) != 32 {
			return nil, nil, fmt.Errorf("%w: layer %s: bad sha256 digest", ErrInvalid, l.Path)
		}
		actual.Resources = append(actual.Resources, oms.Resource{Name: l.Path, Algorithm: string(digest.SHA256), Digest: sum})
	}
	d, err := oms.Compare(signed, actual, oms.CompareOptions{IgnoreUnsigned: opts.IgnoreUnsigned, SingleFile: single})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", verify.ErrFailed, err)
	}
	return d, skipped, nil
}

// Verify resolves the reference, finds the OMS signatures attached to the
// model manifest (referrers API or referrers tag), authenticates them with
// opts.Verifier, and checks the signed file digests against the layer
// digests without downloading any layer. It succeeds when one signature
// authenticates and matches. For artifacts whose layer digests are not file
// digests, it authenticates only and sets NeedsContent.
//
// Errors wrap verify.ErrFailed for a failed verification (no signature,
// untrusted signer, changed/missing/extra files; a mismatch is a
// *verify.MismatchError), ErrInvalid for a malformed or unsafe manifest,
// and name the reference.
func Verify(ctx context.Context, repo *Repo, opts VerifyOptions) (*Verified, error) {
	if opts.Verifier == nil {
		return nil, errors.New("no verifier configured")
	}
	a, err := Resolve(ctx, repo)
	if err != nil {
		return nil, err
	}
	return VerifyArtifact(ctx, repo, a, opts)
}

// VerifyArtifact is Verify for an artifact already resolved.
func VerifyArtifact(ctx context.Context, repo *Repo, a *Artifact, opts VerifyOptions) (*Verified, error) {
	refs, skips, err := Referrers(ctx, repo, a.Descriptor, MediaTypeSigstoreBundle, MediaTypeSigstoreBundle, maxBundleBlob)
	if err != nil {
		return nil, err
	}
	if len(refs) == 0 {
		return nil, repo.errf("%w: no signature is attached to %s%s", verify.ErrFailed, a.Descriptor.Digest, joinSkips(skips))
	}
	var (
		mismatch *verify.MismatchError
		problems []string
	)
	for _, ref := range refs {
		b, err := verify.ParseBundle(ref.Data)
		if err != nil {
			problems = append(problems, fmt.Sprintf("signature %s: %v", ref.Descriptor.Digest, err))
			continue
		}
		if err := opts.Verifier.Verify(ctx, b); err != nil {
			problems = append(problems, fmt.Sprintf("signature %s: %v", ref.Descriptor.Digest, err))
			continue
		}
		signed, err := oms.ParseStatement(b.Payload)
		if err != nil {
			problems = append(problems, fmt.Sprintf("signature %s: signed statement: %v", ref.Descriptor.Digest, err))
			continue
		}
		v := &Verified{Artifact: a, Signed: signed, Signature: ref, Skips: skips}
		if !a.AllRaw() || signed.Serialization.Method != oms.MethodFiles || signed.Serialization.HashType != digest.SHA256 {
			v.NeedsContent = true
			ign, err := signedIgnores(signed, opts.IgnorePaths)
			if err != nil {
				return nil, repo.errf("%w", err)
			}
			v.Skipped = map[string]bool{}
			for _, l := range a.Layers {
				if l.Packing == Raw && ignoredBy(l.Path, ign) {
					v.Skipped[l.Path] = true
				}
			}
			return v, nil
		}
		diff, skipped, err := CompareLayers(signed, a, opts)
		if err != nil {
			problems = append(problems, fmt.Sprintf("signature %s: %v", ref.Descriptor.Digest, err))
			continue
		}
		if !diff.Empty() {
			mismatch = &verify.MismatchError{Diff: diff}
			continue
		}
		v.Skipped = skipped
		return v, nil
	}
	if mismatch != nil {
		return nil, repo.errf("%w", mismatch)
	}
	return nil, repo.errf("%w: no attached signature verifies:\n  %s%s", verify.ErrFailed, strings.Join(problems, "\n  "), joinSkips(skips))
}

func joinSkips(skips []error) string {
	if len(skips) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n  referrers left out:")
	for _, e := range skips {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// LayerManifest builds the OMS manifest of an artifact from its raw layer
// digests, for signing an artifact already pushed without downloading it.
// The resources are sorted as model_signing sorts them.
func LayerManifest(a *Artifact, modelName string) (*oms.Manifest, error) {
	if !a.AllRaw() {
		return nil, fmt.Errorf("%w: the artifact has tar layers; only one-file-per-layer artifacts can be signed from their digests", ErrInvalid)
	}
	set := &modelfs.Set{Name: modelName}
	res := &digest.Result{Algorithm: digest.SHA256}
	for _, l := range a.Layers {
		set.Files = append(set.Files, modelfs.File{Name: l.Path, Size: l.Descriptor.Size})
	}
	sortFiles(set.Files)
	byPath := a.RawFiles()
	for _, f := range set.Files {
		sum, err := hex.DecodeString(byPath[f.Name].Descriptor.Digest.Encoded())
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("%w: layer %s: bad sha256 digest", ErrInvalid, f.Name)
		}
		res.Items = append(res.Items, digest.Item{File: f.Name, Start: 0, End: f.Size, Sum: sum})
	}
	return oms.New(set, res, false, []string{}), nil
}

func sortFiles(fs []modelfs.File) {
	slices.SortFunc(fs, func(a, b modelfs.File) int { return modelfs.Compare(a.Name, b.Name) })
}
