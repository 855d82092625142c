package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/modelseal/modelseal/pkg/oms"
)

// MaxReferrers bounds the referrers of one type examined for a manifest.
const MaxReferrers = 64

// MaxBOMSize bounds an attached BOM.
const MaxBOMSize = 64 << 20

// maxBundleBlob bounds a signature bundle blob (as pkg/verify does).
const maxBundleBlob = oms.MaxStatementSize/3*4 + 16<<20

// Resolve resolves the reference to the model manifest, fetches it (its
// digest checked) and parses it.
func Resolve(ctx context.Context, repo *Repo) (*Artifact, error) {
	desc, err := repo.Target.Resolve(ctx, repo.Reference)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, repo.errf("%s: %w", repo.Reference, ErrNotFound)
		}
		return nil, repo.errf("resolving %s: %v", repo.Reference, err)
	}
	if isDigest(repo.Reference) && desc.Digest.String() != repo.Reference {
		return nil, repo.errf("registry resolved %s to %s", repo.Reference, desc.Digest)
	}
	if desc.MediaType != "" && desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, repo.errf("%s is a %s, not an OCI image manifest (indexes are not model artifacts)", desc.Digest, desc.MediaType)
	}
	desc.MediaType = ocispec.MediaTypeImageManifest
	data, err := fetchSmall(ctx, repo.Target, desc, MaxManifestSize)
	if err != nil {
		return nil, repo.errf("manifest %s: %v", desc.Digest, err)
	}
	a, err := ParseManifest(desc, data)
	if err != nil {
		return nil, repo.errf("manifest %s: %w", desc.Digest, err)
	}
	return a, nil
}

// fetchSmall fetches a blob or manifest of at most limit bytes and checks
// its size and digest.
func fetchSmall(ctx context.Context, t content.Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("%s: size %d exceeds the %d byte limit", desc.Digest, desc.Size, limit)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("digest %q: %w", desc.Digest, err)
	}
	data, err := content.FetchAll(ctx, t, desc)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// attach pushes a single-layer referrer manifest of the given artifact type.
func attach(ctx context.Context, repo *Repo, subject ocispec.Descriptor, artifactType, layerType string, data []byte, ann map[string]string) (ocispec.Descriptor, error) {
	layer := ocispec.Descriptor{MediaType: layerType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := pushBytes(ctx, repo.Target, layer, data); err != nil {
		return ocispec.Descriptor{}, repo.errf("%s blob: %v", artifactType, err)
	}
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	if subj.MediaType == "" {
		subj.MediaType = ocispec.MediaTypeImageManifest
	}
	desc, err := oras.PackManifest(ctx, repo.Target, oras.PackManifestVersion1_1, artifactType, oras.PackManifestOptions{
		Subject:             &subj,
		Layers:              []ocispec.Descriptor{layer},
		ManifestAnnotations: ann,
	})
	if err != nil {
		return ocispec.Descriptor{}, repo.errf("%s referrer: %v", artifactType, err)
	}
	if repo.Layout != nil {
		if err := repo.Layout.SaveIndex(); err != nil {
			return desc, repo.errf("saving the layout index: %v", err)
		}
	}
	return desc, nil
}

// AttachSignature attaches an OMS signature bundle to the model manifest
// subject in cosign v3's layout: artifactType and single layer
// application/vnd.dev.sigstore.bundle.v0.3+json, empty config, annotations
// dev.sigstore.bundle.content=dsse-envelope and
// dev.sigstore.bundle.predicateType=https://model_signing/signature/v1.0.
func AttachSignature(ctx context.Context, repo *Repo, subject ocispec.Descriptor, bundle []byte, created time.Time) (ocispec.Descriptor, error) {
	if created.IsZero() {
		created = time.Now()
	}
	return attach(ctx, repo, subject, MediaTypeSigstoreBundle, MediaTypeSigstoreBundle, bundle, map[string]string{
		AnnotationBundleContent:   "dsse-envelope",
		AnnotationBundlePredicate: oms.PredicateType,
		ocispec.AnnotationCreated: created.UTC().Format(time.RFC3339),
	})
}

// AttachBOM attaches a CycloneDX JSON document to the model manifest. It
// checks that the document is JSON with bomFormat CycloneDX.
func AttachBOM(ctx context.Context, repo *Repo, subject ocispec.Descriptor, bom []byte, created time.Time) (ocispec.Descriptor, error) {
	if len(bom) > MaxBOMSize {
		return ocispec.Descriptor{}, repo.errf("BOM of %d bytes exceeds the %d byte limit", len(bom), MaxBOMSize)
	}
	var head struct {
		BOMFormat string `json:"bomFormat"`
	}
	if err := json.Unmarshal(bom, &head); err != nil || head.BOMFormat != "CycloneDX" {
		return ocispec.Descriptor{}, repo.errf("the BOM is not a CycloneDX JSON document (bomFormat %q, %v)", head.BOMFormat, err)
	}
	if created.IsZero() {
		created = time.Now()
	}
	return attach(ctx, repo, subject, MediaTypeCycloneDX, MediaTypeCycloneDX, bom, map[string]string{
		ocispec.AnnotationCreated: created.UTC().Format(time.RFC3339),
	})
}

// Referrer is a single-layer referrer of the model manifest, fetched and
// checked: its subject is the model manifest and its payload matches its
// layer digest.
type Referrer struct {
	// Descriptor is the referrer manifest's descriptor.
	Descriptor ocispec.Descriptor
	// Manifest is the referrer manifest.
	Manifest ocispec.Manifest
	// Data is the layer's content.
	Data []byte
}

// Referrers lists the referrers of subject with the given artifact type
// (through the referrers API, or the referrers tag on registries without
// it), fetches each one and its single layer of layerType, and keeps only
// those whose subject really is the model manifest. Malformed referrers are
// reported in skipped and left out; at most MaxReferrers are examined.
func Referrers(ctx context.Context, repo *Repo, subject ocispec.Descriptor, artifactType, layerType string, limit int64) (refs []Referrer, skipped []error, err error) {
	descs, err := registry.Referrers(ctx, repo.Target, subject, artifactType)
	if err != nil {
		return nil, nil, repo.errf("listing referrers of %s: %v", subject.Digest, err)
	}
	if len(descs) > MaxReferrers {
		skipped = append(skipped, fmt.Errorf("%d referrers of type %s; only the first %d are examined", len(descs), artifactType, MaxReferrers))
		descs = descs[:MaxReferrers]
	}
	for _, d := range descs {
		r, err := fetchReferrer(ctx, repo, subject, d, artifactType, layerType, limit)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("referrer %s: %w", d.Digest, err))
			continue
		}
		refs = append(refs, *r)
	}
	return refs, skipped, nil
}

func fetchReferrer(ctx context.Context, repo *Repo, subject, d ocispec.Descriptor, artifactType, layerType string, limit int64) (*Referrer, error) {
	if d.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("media type %q is not an image manifest", d.MediaType)
	}
	data, err := fetchSmall(ctx, repo.Target, d, MaxManifestSize)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if m.Subject == nil || m.Subject.Digest != subject.Digest {
		got := "none"
		if m.Subject != nil {
			got = m.Subject.Digest.String()
		}
		return nil, fmt.Errorf("its subject is %s, not the model manifest %s", got, subject.Digest)
	}
	at := m.ArtifactType
	if at == "" {
		at = m.Config.MediaType
	}
	if at != artifactType {
		return nil, fmt.Errorf("artifact type %q, want %q", at, artifactType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != layerType {
		return nil, fmt.Errorf("want a single %s layer", layerType)
	}
	if err := checkDescriptor("referrer layer", m.Layers[0]); err != nil {
		return nil, err
	}
	payload, err := fetchSmall(ctx, repo.Target, m.Layers[0], limit)
	if err != nil {
		return nil, err
	}
	return &Referrer{Descriptor: d, Manifest: m, Data: payload}, nil
}

// FetchBOM returns the CycloneDX BOMs attached to the model manifest.
func FetchBOM(ctx context.Context, repo *Repo, subject ocispec.Descriptor) ([][]byte, error) {
	refs, _, err := Referrers(ctx, repo, subject, MediaTypeCycloneDX, MediaTypeCycloneDX, MaxBOMSize)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, r := range refs {
		out = append(out, bytes.Clone(r.Data))
	}
	return out, nil
}
