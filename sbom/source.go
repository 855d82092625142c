package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/modelseal/modelseal/pkg/hfcache"
	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Kinds of source.
const (
	KindFolder      = "folder"
	KindFile        = "file"
	KindHFCache     = "huggingface-cache"
	KindOCILayout   = "oci-layout"
	ociLayoutFile   = "oci-layout"
	maxOCIJSONSize  = 4 << 20
	annFilepath     = "org.cncf.model.filepath"
	annFilepathOld  = "org.cnai.model.filepath"
	annTitle        = "org.opencontainers.image.title"
	annRefName      = "org.opencontainers.image.ref.name"
	modelPackConfig = "application/vnd.cncf.model.config.v1+json"
)

// Source says where a model's file set came from and what that place
// already tells about it.
type Source struct {
	// Kind is KindFolder, KindFile, KindHFCache or KindOCILayout.
	Kind string
	// RepoID is the Hugging Face repository id ("org/name"), when known.
	RepoID string
	// Revision is the commit (Hugging Face) or manifest digest (OCI).
	Revision string
	// Blobs maps file names of a Hugging Face cache snapshot to the name of
	// the blob they link to (the sha256 of an LFS file, the git blob SHA-1
	// of a small file).
	Blobs map[string]string
	// MediaTypes maps file names of an OCI layout to their layer media type.
	MediaTypes map[string]string
	// LayerDigests maps file names of an OCI layout to their layer digest
	// ("sha256:<hex>"), which must equal the file's sha256.
	LayerDigests map[string]string
	// Ref is the OCI reference name of the manifest, if annotated.
	Ref string
	// OCIConfig is the ModelPack config, when the manifest has one.
	OCIConfig *ModelPackConfig
}

// ModelPackConfig is the part of a CNCF ModelPack config the BOM uses.
type ModelPackConfig struct {
	Descriptor struct {
		Name      string   `json:"name"`
		Version   string   `json:"version"`
		Family    string   `json:"family"`
		Vendor    string   `json:"vendor"`
		Licenses  []string `json:"licenses"`
		Authors   []string `json:"authors"`
		DocURL    string   `json:"docURL"`
		SourceURL string   `json:"sourceURL"`
		Revision  string   `json:"revision"`
	} `json:"descriptor"`
	Config struct {
		Architecture string `json:"architecture"`
		Format       string `json:"format"`
		ParamSize    string `json:"paramSize"`
		Precision    string `json:"precision"`
		Quantization string `json:"quantization"`
	} `json:"config"`
}

// OpenOptions controls Open.
type OpenOptions struct {
	// Files are the listing options for folders and files (ignores,
	// symlink policy). Hugging Face snapshots always follow their links,
	// bounded by the repository folder.
	Files modelfs.Options
	// Revision picks a Hugging Face cache revision: a ref name under refs/
	// or a snapshot folder name. Empty means refs/main, or else the newest
	// snapshot.
	Revision string
}

// Open lists the model at path: a model folder, a single model file, a
// Hugging Face cache entry (models--org--name, one of its snapshot folders,
// or hf://org/name[@rev] looked up in the local cache) or an OCI image
// layout holding a ModelPack artifact.
func Open(path string, opts OpenOptions) (*Source, *modelfs.Set, error) {
	if repo, ok, err := hfcache.Resolve(path, os.Getenv); ok {
		if err != nil {
			return nil, nil, err
		}
		if opts.Revision != "" {
			if repo, err = hfcache.Open(repo.Dir, opts.Revision); err != nil {
				return nil, nil, err
			}
		}
		if repo.Kind != "model" {
			return nil, nil, fmt.Errorf("%s: a %s, not a model", path, repo.Kind)
		}
		return openHFCache(repo, opts)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", path, err)
	}
	if !fi.IsDir() {
		set, err := modelfs.Open(path, opts.Files)
		return &Source{Kind: KindFile}, set, err
	}
	if isFile(filepath.Join(path, ociLayoutFile)) && isFile(filepath.Join(path, "index.json")) {
		return openOCILayout(path)
	}
	set, err := modelfs.Open(path, opts.Files)
	return &Source{Kind: KindFolder}, set, err
}

func isFile(p string) bool { fi, err := os.Stat(p); return err == nil && fi.Mode().IsRegular() }

// openHFCache lists the snapshot of a Hugging Face cache entry; its links
// into the repository's blobs are followed.
func openHFCache(repo *hfcache.Repo, opts OpenOptions) (*Source, *modelfs.Set, error) {
	fo := opts.Files
	fo.Symlinks = modelfs.FollowSymlinks
	fo.SymlinkRoot = repo.Dir
	set, err := modelfs.Open(repo.Snapshot, fo)
	if err != nil {
		return nil, nil, err
	}
	src := &Source{Kind: KindHFCache, RepoID: repo.ID, Revision: repo.Revision, Blobs: map[string]string{}}
	for _, f := range set.Files {
		if filepath.Base(filepath.Dir(f.Path)) == "blobs" {
			src.Blobs[f.Name] = filepath.Base(f.Path)
		}
	}
	return src, set, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

type ociDescriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations"`
}

type ociManifest struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       ociDescriptor     `json:"config"`
	Layers       []ociDescriptor   `json:"layers"`
	Annotations  map[string]string `json:"annotations"`
}

var ociDigest = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

// ociBlob returns the path of a blob in the layout and checks its size.
func ociBlob(layout string, d ociDescriptor) (string, error) {
	m := ociDigest.FindStringSubmatch(d.Digest)
	if m == nil {
		return "", fmt.Errorf("digest %q: only sha256 digests are supported", d.Digest)
	}
	p := filepath.Join(layout, "blobs", "sha256", m[1])
	fi, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != d.Size {
		return "", fmt.Errorf("blob %s: size %d, descriptor says %d", d.Digest, fi.Size(), d.Size)
	}
	return p, nil
}

// readOCIJSON reads a small blob and checks its digest.
func readOCIJSON(layout string, d ociDescriptor, v any) error {
	if d.Size > maxOCIJSONSize {
		return fmt.Errorf("blob %s: %d bytes exceeds the %d byte limit", d.Digest, d.Size, maxOCIJSONSize)
	}
	p, err := ociBlob(layout, d)
	if err != nil {
		return err
	}
	data, err := readLimited(p, maxOCIJSONSize)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if "sha256:"+hex.EncodeToString(sum[:]) != d.Digest {
		return fmt.Errorf("blob %s: content does not match its digest", d.Digest)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

// openOCILayout lists the raw layers of the ModelPack manifest of an OCI
// image layout: index.json, then the manifest, then its layers, each a file
// named by its org.cncf.model.filepath annotation.
func openOCILayout(layout string) (*Source, *modelfs.Set, error) {
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	data, err := readLimited(filepath.Join(layout, "index.json"), maxOCIJSONSize)
	if err != nil {
		return nil, nil, fmt.Errorf("oci layout %s: %w", layout, err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, nil, fmt.Errorf("oci layout %s: index.json: %w", layout, err)
	}
	var desc *ociDescriptor
	for i, d := range index.Manifests {
		if d.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			continue
		}
		if desc != nil {
			return nil, nil, fmt.Errorf("oci layout %s: index.json lists more than one manifest", layout)
		}
		desc = &index.Manifests[i]
	}
	if desc == nil {
		return nil, nil, fmt.Errorf("oci layout %s: index.json lists no image manifest", layout)
	}
	var man ociManifest
	if err := readOCIJSON(layout, *desc, &man); err != nil {
		return nil, nil, fmt.Errorf("oci layout %s: manifest: %w", layout, err)
	}
	src := &Source{Kind: KindOCILayout, Revision: desc.Digest, MediaTypes: map[string]string{}, LayerDigests: map[string]string{},
		Ref: desc.Annotations[annRefName]}
	if man.Config.MediaType == modelPackConfig || strings.HasPrefix(man.Config.MediaType, "application/vnd.cnai.model.config.") {
		var cfg ModelPackConfig
		if err := readOCIJSON(layout, man.Config, &cfg); err != nil {
			return nil, nil, fmt.Errorf("oci layout %s: config: %w", layout, err)
		}
		src.OCIConfig = &cfg
	}
	abs, _ := filepath.Abs(layout)
	set := &modelfs.Set{Root: layout, Name: filepath.Base(abs)}
	if t := man.Annotations[annTitle]; t != "" {
		set.Name = t
	} else if src.OCIConfig != nil && src.OCIConfig.Descriptor.Name != "" {
		set.Name = src.OCIConfig.Descriptor.Name
	}
	for _, l := range man.Layers {
		fp := firstNonEmpty(l.Annotations[annFilepath], l.Annotations[annFilepathOld])
		if fp == "" {
			return nil, nil, fmt.Errorf("oci layout %s: layer %s has no %s annotation", layout, l.Digest, annFilepath)
		}
		name, err := modelfs.CleanName(fp)
		if err != nil || name == "." || strings.ContainsRune(fp, '\\') {
			return nil, nil, fmt.Errorf("oci layout %s: layer %s: file path %q: not a path inside the model", layout, l.Digest, fp)
		}
		if strings.Contains(l.MediaType, ".tar") {
			return nil, nil, fmt.Errorf("oci layout %s: layer %s (%s): %s: only raw layers are supported", layout, l.Digest, name, l.MediaType)
		}
		if _, dup := src.MediaTypes[name]; dup {
			return nil, nil, fmt.Errorf("oci layout %s: two layers for %s", layout, name)
		}
		p, err := ociBlob(layout, l)
		if err != nil {
			return nil, nil, fmt.Errorf("oci layout %s: layer %s: %w", layout, name, err)
		}
		set.Files = append(set.Files, modelfs.File{Name: name, Size: l.Size, Path: p})
		src.MediaTypes[name] = l.MediaType
		src.LayerDigests[name] = l.Digest
	}
	if len(set.Files) == 0 {
		return nil, nil, fmt.Errorf("oci layout %s: the manifest has no layers", layout)
	}
	sortFiles(set.Files)
	return src, set, nil
}

func sortFiles(files []modelfs.File) {
	slices.SortFunc(files, func(a, b modelfs.File) int { return modelfs.Compare(a.Name, b.Name) })
}
