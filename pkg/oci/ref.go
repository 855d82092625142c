// Package oci moves models through OCI registries and OCI image layouts.
//
// A model folder becomes a CNCF ModelPack v1 artifact with one raw layer per
// file (annotation org.cncf.model.filepath), so that every layer digest is
// the file's SHA-256: the same value the OpenSSF Model Signing (OMS)
// statement, the Hugging Face LFS id and the BOM carry. Signatures (Sigstore
// bundles, in cosign v3's referrer layout) and CycloneDX BOMs are attached as
// OCI 1.1 referrers of the model manifest; registries without the referrers
// API get the sha256-<hex> referrers tag instead (oras-go does it).
//
// Verification works from the manifest alone: the signed OMS resources must
// equal the layer digests by file path, so no blob is downloaded. Pull
// downloads into a temporary folder, checks every blob against its digest,
// and moves only a fully verified model into place. Older ModelPack
// artifacts (vnd.cnai), KitOps ModelKits and Docker Model Runner artifacts
// are read too; their tar layers are unpacked with every name checked.
//
// Manifests, annotations, tar headers and blob sizes come from the registry
// and are treated as hostile: each is bounded and validated before use.
package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// LayoutPrefix marks a reference to a local OCI image layout: oci:DIR,
// oci:DIR:tag or oci:DIR@sha256:<hex>.
const LayoutPrefix = "oci:"

// DefaultTag is the tag of a reference that names neither tag nor digest.
const DefaultTag = "latest"

// MaxManifestSize bounds a manifest or referrers index read from a registry
// (oras-go's default metadata limit).
const MaxManifestSize = 4 << 20

// MaxReferrerPages bounds the pages of a referrers listing.
const MaxReferrerPages = 16

// Target is the storage an artifact lives in: a remote repository or an OCI
// image layout.
type Target interface {
	oras.GraphTarget
}

// Repo is an opened reference: a place to read and write artifacts, and the
// tag or digest the user named.
type Repo struct {
	// Ref is the reference as the user gave it (for messages).
	Ref string
	// Target is the repository or layout.
	Target Target
	// Reference is the tag or digest within Target.
	Reference string
	// Remote is set for registry references.
	Remote *remote.Repository
	// Layout is set for oci: references.
	Layout *oci.Store
}

// OpenOptions configures Open.
type OpenOptions struct {
	// PlainHTTP talks HTTP instead of HTTPS (loopback test registries).
	PlainHTTP bool
	// HTTPClient replaces the default retrying client.
	HTTPClient *http.Client
	// Credentials resolves registry credentials; when nil, the Docker
	// configuration and its credential helpers are used (no credentials if
	// there is no configuration).
	Credentials auth.CredentialFunc
	// NoDockerCredentials leaves registry requests anonymous when
	// Credentials is nil.
	NoDockerCredentials bool
	// CreateLayout creates the OCI layout folder if it does not exist
	// (push); otherwise a missing layout is an error.
	CreateLayout bool
}

// IsLayoutRef reports whether ref names an OCI image layout.
func IsLayoutRef(ref string) bool { return strings.HasPrefix(ref, LayoutPrefix) }

// LooksLikeRef reports whether s reads as an OCI reference: an oci: layout
// or a registry reference whose first component is a host (it has a dot or
// a port, or is localhost) and that names a repository. Callers decide
// between a local path and a reference; this is only the syntax.
func LooksLikeRef(s string) bool {
	if IsLayoutRef(s) {
		return true
	}
	if strings.Contains(s, "\\") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return false
	}
	r, err := registry.ParseReference(s)
	if err != nil {
		return false
	}
	host := r.Registry
	return strings.ContainsAny(host, ".:") || host == "localhost"
}

// SplitLayoutRef splits oci:DIR[:tag|@digest] into the folder and the tag or
// digest (DefaultTag when absent). A colon followed by a valid tag at the
// end is the tag; any other colon belongs to the folder name.
func SplitLayoutRef(ref string) (dir, reference string, err error) {
	if !IsLayoutRef(ref) {
		return "", "", fmt.Errorf("%s: not an oci: layout reference", ref)
	}
	s := strings.TrimPrefix(ref, LayoutPrefix)
	if i := strings.LastIndex(s, "@"); i >= 0 {
		d, err := digest.Parse(s[i+1:])
		if err != nil {
			return "", "", fmt.Errorf("%s: bad digest: %w", ref, err)
		}
		dir, reference = s[:i], d.String()
	} else if i := strings.LastIndex(s, ":"); i >= 0 && validTag(s[i+1:]) && !strings.Contains(s[i+1:], "/") {
		dir, reference = s[:i], s[i+1:]
	} else {
		dir, reference = s, DefaultTag
	}
	if dir == "" {
		return "", "", fmt.Errorf("%s: no layout folder", ref)
	}
	return dir, reference, nil
}

func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i, c := range t {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || (i > 0 && (c == '.' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}

// Open opens a registry reference (registry/repo[:tag|@digest]) or an OCI
// layout reference (oci:DIR[:tag|@digest]).
func Open(ctx context.Context, ref string, opts OpenOptions) (*Repo, error) {
	if IsLayoutRef(ref) {
		dir, reference, err := SplitLayoutRef(ref)
		if err != nil {
			return nil, err
		}
		if !opts.CreateLayout {
			if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
				return nil, fmt.Errorf("%s: not an OCI image layout: %w", ref, err)
			}
		}
		st, err := oci.NewWithContext(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		return &Repo{Ref: ref, Target: st, Reference: reference, Layout: st}, nil
	}
	r, err := registry.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: not a registry reference (registry/repository:tag or @sha256:...) nor oci:DIR: %w", ref, err)
	}
	reference := r.Reference
	if reference == "" {
		reference = DefaultTag
		r.Reference = DefaultTag
	}
	repo, err := remote.NewRepository(r.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	repo.PlainHTTP = opts.PlainHTTP
	repo.MaxMetadataBytes = MaxManifestSize
	repo.ReferrerListMaxPages = MaxReferrerPages
	hc := opts.HTTPClient
	if hc == nil {
		hc = retry.DefaultClient
	}
	cred := opts.Credentials
	if cred == nil && !opts.NoDockerCredentials {
		store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("%s: docker credentials: %w", ref, err)
		}
		cred = credentials.Credential(store)
	}
	repo.Client = &auth.Client{Client: hc, Cache: auth.NewCache(), Credential: cred}
	return &Repo{Ref: ref, Target: repo, Reference: reference, Remote: repo}, nil
}

// isDigest reports whether the reference is a digest rather than a tag.
func isDigest(reference string) bool {
	_, err := digest.Parse(reference)
	return err == nil
}

// errf formats an error that names the reference.
func (r *Repo) errf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", r.Ref, fmt.Errorf(format, args...))
}

// ErrNotFound reports a reference, signature or blob that is not there.
var ErrNotFound = errors.New("not found")
