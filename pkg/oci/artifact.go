package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	modelspec "github.com/modelpack/model-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types and annotations of the formats read and written here.
const (
	// ModelPack v1 (github.com/modelpack/model-spec v0.0.7).
	ArtifactTypeModelPack = modelspec.ArtifactTypeModelManifest
	MediaTypeModelConfig  = modelspec.MediaTypeModelConfig
	AnnotationFilepath    = modelspec.AnnotationFilepath
	modelPackLayerPrefix  = "application/vnd.cncf.model."

	// The older CNAI names of the same format.
	ArtifactTypeCNAI       = "application/vnd.cnai.model.manifest.v1+json"
	MediaTypeCNAIConfig    = "application/vnd.cnai.model.config.v1+json"
	AnnotationCNAIFilepath = "org.cnai.model.filepath"
	cnaiLayerPrefix        = "application/vnd.cnai.model."

	// KitOps ModelKit.
	MediaTypeKitConfig = "application/vnd.kitops.modelkit.config.v1+json"
	kitLayerPrefix     = "application/vnd.kitops.modelkit."

	// Docker Model Runner.
	MediaTypeDockerAIConfigV01 = "application/vnd.docker.ai.model.config.v0.1+json"
	MediaTypeDockerAIConfigV02 = "application/vnd.docker.ai.model.config.v0.2+json"
	dockerAIPrefix             = "application/vnd.docker.ai."

	// Referrers.
	MediaTypeSigstoreBundle   = "application/vnd.dev.sigstore.bundle.v0.3+json"
	MediaTypeCycloneDX        = "application/vnd.cyclonedx+json"
	AnnotationBundleContent   = "dev.sigstore.bundle.content"
	AnnotationBundlePredicate = "dev.sigstore.bundle.predicateType"

	annotationTitle = ocispec.AnnotationTitle
)

// Limits on what a manifest may describe.
const (
	// MaxLayers bounds the layers of a model manifest.
	MaxLayers = 100_000
	// MaxPathLength bounds a file path from an annotation or a tar header.
	MaxPathLength = 4096
	// MaxAnnotationsSize bounds the total size of a descriptor's annotations.
	MaxAnnotationsSize = 64 << 10
	// MaxBlobSize bounds one layer (1 TiB).
	MaxBlobSize = 1 << 40
)

// Format names the kind of model artifact.
type Format string

// The formats read.
const (
	FormatModelPack Format = "modelpack"
	FormatCNAI      Format = "modelpack-cnai"
	FormatKitOps    Format = "kitops"
	FormatDockerAI  Format = "docker-model"
)

// Packing says how a layer holds its files.
type Packing string

// Layer packings.
const (
	Raw     Packing = "raw"
	Tar     Packing = "tar"
	TarGzip Packing = "tar+gzip"
	TarZstd Packing = "tar+zstd"
)

// Layer is one layer of a model artifact mapped to the model's files.
type Layer struct {
	// Descriptor is the layer as the manifest lists it.
	Descriptor ocispec.Descriptor
	// Path is the file a raw layer holds. For a tar layer it is the
	// annotated path (may be empty); the files come from the tar.
	Path string
	// Packing is Raw for one file per layer, or a tar variant.
	Packing Packing
	// Kind is the layer's role (weight, config, doc, code, dataset, ...).
	Kind string
}

// Artifact is a parsed model manifest.
type Artifact struct {
	// Descriptor is the manifest's descriptor (its digest is what
	// signatures and BOMs refer to).
	Descriptor ocispec.Descriptor
	// Manifest is the decoded manifest.
	Manifest ocispec.Manifest
	// Format is the artifact's family.
	Format Format
	// Layers in manifest order.
	Layers []Layer
}

// RawFiles maps file path to layer for raw layers.
func (a *Artifact) RawFiles() map[string]Layer {
	out := make(map[string]Layer, len(a.Layers))
	for _, l := range a.Layers {
		if l.Packing == Raw {
			out[l.Path] = l
		}
	}
	return out
}

// AllRaw reports whether every layer is one raw file, so that the layer
// digests are the file digests.
func (a *Artifact) AllRaw() bool {
	for _, l := range a.Layers {
		if l.Packing != Raw {
			return false
		}
	}
	return true
}

// ErrInvalid wraps every error about a malformed or unsafe manifest.
var ErrInvalid = errors.New("invalid model manifest")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// CheckPath validates a file path that came from a manifest annotation or a
// tar header: relative, '/'-separated, clean (no "", "." or ".."
// components), no backslash, no control characters, valid UTF-8, bounded.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty file path")
	case len(p) > MaxPathLength:
		return fmt.Errorf("file path of %d bytes (limit %d)", len(p), MaxPathLength)
	case !utf8.ValidString(p):
		return fmt.Errorf("file path %q is not valid UTF-8", p)
	case strings.ContainsRune(p, '\\'):
		return fmt.Errorf("file path %q contains a backslash", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("file path %q is absolute", p)
	case len(p) >= 2 && p[1] == ':':
		return fmt.Errorf("file path %q has a drive letter", p)
	}
	for _, c := range p {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("file path %q contains a control character", p)
		}
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "..":
			return fmt.Errorf("file path %q leaves the model", p)
		case "", ".":
			return fmt.Errorf("file path %q is not clean", p)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("file path %q is not clean", p)
	}
	return nil
}

// pathSet detects duplicate paths, paths that differ only in case (they
// collide on case-insensitive file systems) and a file that is also a
// folder of another file.
type pathSet struct {
	files map[string]string // lower-case -> original
	dirs  map[string]bool   // lower-case folder prefixes
}

func newPathSet() *pathSet {
	return &pathSet{files: map[string]string{}, dirs: map[string]bool{}}
}

func (s *pathSet) add(p string) error {
	lp := strings.ToLower(p)
	if prev, ok := s.files[lp]; ok {
		if prev == p {
			return fmt.Errorf("file path %q appears twice", p)
		}
		return fmt.Errorf("file paths %q and %q differ only in case", prev, p)
	}
	if s.dirs[lp] {
		return fmt.Errorf("file path %q is also a folder of another file", p)
	}
	for d := path.Dir(lp); d != "."; d = path.Dir(d) {
		if _, ok := s.files[d]; ok {
			return fmt.Errorf("file path %q lies below the file %q", p, s.files[d])
		}
		s.dirs[d] = true
	}
	s.files[lp] = p
	return nil
}

func annotationsSize(a map[string]string) int {
	n := 0
	for k, v := range a {
		n += len(k) + len(v)
	}
	return n
}

func checkDescriptor(what string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return invalid("%s: digest %q: %v", what, d.Digest, err)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return invalid("%s: digest algorithm %s, want sha256", what, d.Digest.Algorithm())
	}
	if d.Size < 0 || d.Size > MaxBlobSize {
		return invalid("%s: size %d out of range", what, d.Size)
	}
	if n := annotationsSize(d.Annotations); n > MaxAnnotationsSize {
		return invalid("%s: %d bytes of annotations (limit %d)", what, n, MaxAnnotationsSize)
	}
	if len(d.URLs) > 0 {
		return invalid("%s: foreign layer URLs are not followed", what)
	}
	return nil
}

// ParseManifest decodes a model manifest and maps its layers to file paths.
// desc is the manifest's descriptor (its digest is not checked here; the
// fetch does it). It accepts ModelPack v1, the older vnd.cnai names, KitOps
// ModelKits and Docker Model Runner artifacts, and refuses unsafe or
// duplicate paths, unknown layer types within a known format, and anything
// out of bounds.
func ParseManifest(desc ocispec.Descriptor, data []byte) (*Artifact, error) {
	if len(data) > MaxManifestSize {
		return nil, invalid("manifest of %d bytes (limit %d)", len(data), MaxManifestSize)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalid("%v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, invalid("schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, invalid("media type %q is not an OCI image manifest", m.MediaType)
	}
	if len(m.Layers) > MaxLayers {
		return nil, invalid("%d layers (limit %d)", len(m.Layers), MaxLayers)
	}
	if err := checkDescriptor("config", m.Config); err != nil {
		return nil, err
	}
	if n := annotationsSize(m.Annotations); n > MaxAnnotationsSize {
		return nil, invalid("%d bytes of manifest annotations (limit %d)", n, MaxAnnotationsSize)
	}
	a := &Artifact{Descriptor: desc, Manifest: m}
	switch {
	case m.ArtifactType == ArtifactTypeModelPack || m.Config.MediaType == MediaTypeModelConfig:
		a.Format = FormatModelPack
	case m.ArtifactType == ArtifactTypeCNAI || m.Config.MediaType == MediaTypeCNAIConfig:
		a.Format = FormatCNAI
	case m.Config.MediaType == MediaTypeKitConfig:
		a.Format = FormatKitOps
	case m.Config.MediaType == MediaTypeDockerAIConfigV01 || m.Config.MediaType == MediaTypeDockerAIConfigV02 ||
		strings.HasPrefix(m.Config.MediaType, dockerAIPrefix+"model.config."):
		a.Format = FormatDockerAI
	default:
		return nil, invalid("not a model artifact: artifactType %q, config media type %q", m.ArtifactType, m.Config.MediaType)
	}
	if len(m.Layers) == 0 {
		return nil, invalid("no layers")
	}
	paths := newPathSet()
	counts := map[string]int{}
	for i, ld := range m.Layers {
		what := fmt.Sprintf("layer %d (%s)", i, ld.Digest)
		if err := checkDescriptor(what, ld); err != nil {
			return nil, err
		}
		l, err := mapLayer(a.Format, ld, counts)
		if err != nil {
			return nil, invalid("%s: %v", what, err)
		}
		if l.Path != "" {
			if err := CheckPath(l.Path); err != nil {
				return nil, invalid("%s: %v", what, err)
			}
			if l.Packing == Raw {
				if err := paths.add(l.Path); err != nil {
					return nil, invalid("%s: %v", what, err)
				}
			}
		}
		a.Layers = append(a.Layers, l)
	}
	return a, nil
}

// splitLayerType parses "<prefix><kind>.v1.<packing>".
func splitLayerType(mt, prefix string) (kind string, p Packing, ok bool) {
	rest, found := strings.CutPrefix(mt, prefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, ".v1.")
	if i <= 0 {
		return "", "", false
	}
	kind, pk := rest[:i], Packing(rest[i+len(".v1."):])
	switch pk {
	case Raw, Tar, TarGzip, TarZstd:
	default:
		return "", "", false
	}
	switch kind {
	case "weight", "weight.config", "doc", "code", "dataset",
		// KitOps kinds.
		"model", "modelpart", "docs", "prompts":
	default:
		return "", "", false
	}
	return kind, pk, true
}

func mapLayer(f Format, d ocispec.Descriptor, counts map[string]int) (Layer, error) {
	l := Layer{Descriptor: d}
	switch f {
	case FormatModelPack, FormatCNAI:
		prefix, key := modelPackLayerPrefix, AnnotationFilepath
		if f == FormatCNAI {
			prefix, key = cnaiLayerPrefix, AnnotationCNAIFilepath
		}
		kind, pk, ok := splitLayerType(d.MediaType, prefix)
		if !ok {
			return l, fmt.Errorf("unknown layer media type %q", d.MediaType)
		}
		l.Kind, l.Packing = kind, pk
		l.Path = d.Annotations[key]
		if l.Path == "" && f == FormatCNAI {
			l.Path = d.Annotations[AnnotationFilepath]
		}
		if l.Path == "" && pk == Raw {
			return l, fmt.Errorf("raw layer without the %s annotation", key)
		}
	case FormatKitOps:
		kind, pk, ok := splitLayerType(d.MediaType, kitLayerPrefix)
		if !ok || pk == Raw {
			return l, fmt.Errorf("unknown ModelKit layer media type %q", d.MediaType)
		}
		l.Kind, l.Packing = kind, pk
	case FormatDockerAI:
		rest, ok := strings.CutPrefix(d.MediaType, dockerAIPrefix)
		if !ok || rest == "" {
			return l, fmt.Errorf("unknown Docker model layer media type %q", d.MediaType)
		}
		l.Kind = rest
		l.Packing = Raw
		switch {
		case strings.HasSuffix(rest, ".tar") || strings.HasSuffix(rest, "+tar"):
			l.Packing = Tar
		case strings.HasSuffix(rest, ".tar+gzip"):
			l.Packing = TarGzip
		}
		if l.Packing == Raw {
			l.Path = d.Annotations[AnnotationFilepath]
			if l.Path == "" {
				l.Path = d.Annotations[annotationTitle]
			}
			if l.Path == "" {
				l.Path = dockerDefaultName(rest, counts)
			}
		}
	}
	return l, nil
}

// dockerDefaultName names a Docker model layer that carries no file name.
func dockerDefaultName(kind string, counts map[string]int) string {
	base := map[string]string{
		"gguf.v3":             "model.gguf",
		"safetensors":         "model.safetensors",
		"license":             "LICENSE",
		"chat.template.jinja": "template.jinja",
		"mmproj":              "model.mmproj",
		"dduf":                "model.dduf",
	}[kind]
	if base == "" {
		base = strings.NewReplacer("/", "_", "+", "_").Replace(kind)
	}
	n := counts[base]
	counts[base]++
	if n == 0 {
		return base
	}
	ext := path.Ext(base)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(base, ext), n+1, ext)
}
