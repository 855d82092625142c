package oci

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	modelspec "github.com/modelpack/model-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	moddigest "github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
)

// DefaultCreated is the creation time written when none is given, so that
// pushing the same folder twice gives the same manifest digest.
var DefaultCreated = time.Unix(0, 0).UTC()

// PushOptions configures Push.
type PushOptions struct {
	// Created is written to org.opencontainers.image.created and the
	// config's createdAt; DefaultCreated when zero.
	Created time.Time
	// Metadata fills the ModelPack config; ReadMetadata(set) when nil.
	Metadata *Metadata
	// Annotations are added to the manifest.
	Annotations map[string]string
	// Concurrency is the number of blobs uploaded at once (default 3).
	Concurrency int
	// Progress, when set, is called after each blob with the number of
	// blobs done, the total and the blob's size. Calls are serialised.
	Progress func(done, total int, size int64)
}

// LayerMediaType picks the ModelPack raw layer type of a file from its name:
// weights, weight configuration (tokenizer, config.json), documentation,
// code or datasets. Unknown files are weights. The media type is only a
// hint for consumers; verification never depends on it.
func LayerMediaType(name string) string {
	base := strings.ToLower(path.Base(name))
	ext := path.Ext(base)
	top := strings.ToLower(strings.SplitN(name, "/", 2)[0])
	switch {
	case strings.HasPrefix(base, "readme") || strings.HasPrefix(base, "license") || strings.HasPrefix(base, "licence") ||
		strings.HasPrefix(base, "notice") || strings.HasPrefix(base, "model_card") || ext == ".md" || ext == ".pdf" || ext == ".rst":
		return modelspec.MediaTypeModelDocRaw
	case ext == ".py" || ext == ".sh" || ext == ".ipynb" || ext == ".js" || ext == ".go" || ext == ".c" || ext == ".cpp" || ext == ".h":
		return modelspec.MediaTypeModelCodeRaw
	case (top == "data" || top == "dataset" || top == "datasets") && strings.Contains(name, "/") ||
		ext == ".parquet" || ext == ".csv" || ext == ".jsonl" || ext == ".arrow":
		return modelspec.MediaTypeModelDatasetRaw
	case ext == ".json" || ext == ".yaml" || ext == ".yml" || ext == ".txt" || ext == ".jinja" ||
		base == "tokenizer.model" || strings.HasPrefix(base, "vocab") || strings.HasPrefix(base, "merges"):
		return modelspec.MediaTypeModelWeightConfigRaw
	}
	return modelspec.MediaTypeModelWeightRaw
}

// Layers builds the raw layer descriptors of a hashed file set: one per
// file, in the set's order, digest = the file's SHA-256. res must be
// whole-file SHA-256 digests.
func Layers(set *modelfs.Set, res *moddigest.Result) ([]ocispec.Descriptor, error) {
	if res.Algorithm != moddigest.SHA256 || res.ShardSize != 0 {
		return nil, errors.New("OCI layers need whole-file sha256 digests (no shards, no other algorithm)")
	}
	if len(res.Items) != len(set.Files) {
		return nil, fmt.Errorf("%d digests for %d files", len(res.Items), len(set.Files))
	}
	if len(set.Files) == 0 {
		return nil, fmt.Errorf("model %s has no files", set.Root)
	}
	out := make([]ocispec.Descriptor, len(set.Files))
	for i, f := range set.Files {
		it := res.Items[i]
		if it.File != f.Name {
			return nil, fmt.Errorf("digest %d is for %s, not %s", i, it.File, f.Name)
		}
		if err := CheckPath(f.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		out[i] = ocispec.Descriptor{
			MediaType:   LayerMediaType(f.Name),
			Digest:      digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(it.Sum)),
			Size:        f.Size,
			Annotations: map[string]string{AnnotationFilepath: f.Name},
		}
	}
	return out, nil
}

// Push uploads a hashed model folder as a ModelPack v1 artifact and tags it
// (unless the reference is a digest, which must then equal the result).
// Blobs already present are not uploaded again; each upload is checked
// against the digest computed before (a file changed since hashing fails).
// It returns the manifest descriptor.
func Push(ctx context.Context, repo *Repo, set *modelfs.Set, res *moddigest.Result, opts PushOptions) (ocispec.Descriptor, error) {
	layers, err := Layers(set, res)
	if err != nil {
		return ocispec.Descriptor{}, repo.errf("%v", err)
	}
	created := opts.Created
	if created.IsZero() {
		created = DefaultCreated
	}
	created = created.UTC()
	md := opts.Metadata
	if md == nil {
		md = ReadMetadata(set)
	}
	cfg := md.config(set.Name, created, layers)
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return ocispec.Descriptor{}, repo.errf("encoding config: %v", err)
	}
	cfgDesc := ocispec.Descriptor{MediaType: MediaTypeModelConfig, Digest: digest.FromBytes(cfgJSON), Size: int64(len(cfgJSON))}

	total := len(layers) + 1
	done := 0
	var mu sync.Mutex
	report := func(size int64) {
		mu.Lock()
		defer mu.Unlock()
		done++
		if opts.Progress != nil {
			opts.Progress(done, total, size)
		}
	}
	if err := pushBytes(ctx, repo.Target, cfgDesc, cfgJSON); err != nil {
		return ocispec.Descriptor{}, repo.errf("config: %v", err)
	}
	report(cfgDesc.Size)

	conc := opts.Concurrency
	if conc <= 0 {
		conc = min(3, max(runtime.GOMAXPROCS(0), 1))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := range layers {
		desc, file := layers[i], set.Files[i]
		g.Go(func() error {
			if err := pushFile(gctx, repo.Target, desc, file); err != nil {
				return repo.errf("%s: %v", file.Name, err)
			}
			report(desc.Size)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ocispec.Descriptor{}, err
	}

	ann := map[string]string{ocispec.AnnotationCreated: created.Format(time.RFC3339)}
	for k, v := range opts.Annotations {
		ann[k] = v
	}
	desc, err := oras.PackManifest(ctx, repo.Target, oras.PackManifestVersion1_1, ArtifactTypeModelPack, oras.PackManifestOptions{
		Layers:              layers,
		ConfigDescriptor:    &cfgDesc,
		ManifestAnnotations: ann,
	})
	if err != nil {
		return ocispec.Descriptor{}, repo.errf("manifest: %v", err)
	}
	if isDigest(repo.Reference) {
		if desc.Digest.String() != repo.Reference {
			return desc, repo.errf("pushed manifest is %s, not the digest in the reference", desc.Digest)
		}
	} else if err := repo.Target.Tag(ctx, desc, repo.Reference); err != nil {
		return desc, repo.errf("tagging %s: %v", repo.Reference, err)
	}
	if repo.Layout != nil {
		if err := repo.Layout.SaveIndex(); err != nil {
			return desc, repo.errf("saving the layout index: %v", err)
		}
	}
	return desc, nil
}

// pushBytes uploads a small blob unless it exists.
func pushBytes(ctx context.Context, t Target, desc ocispec.Descriptor, data []byte) error {
	return pushReader(ctx, t, desc, func() (io.Reader, func(), error) {
		return bytes.NewReader(data), func() {}, nil
	})
}

// pushFile uploads a model file as a blob unless it exists.
func pushFile(ctx context.Context, t Target, desc ocispec.Descriptor, f modelfs.File) error {
	return pushReader(ctx, t, desc, func() (io.Reader, func(), error) {
		r, err := f.Open()
		if err != nil {
			return nil, nil, err
		}
		// A plain file goes to the HTTP client as is, which lets it use
		// sendfile(2); the registry checks the digest of what it receives.
		if fh, ok := r.(*os.File); ok {
			return fh, func() { fh.Close() }, nil
		}
		return io.NewSectionReader(r, 0, desc.Size), func() { r.Close() }, nil
	})
}

func pushReader(ctx context.Context, t Target, desc ocispec.Descriptor, open func() (io.Reader, func(), error)) error {
	ok, err := t.Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("checking blob %s: %w", desc.Digest, err)
	}
	if ok {
		return nil
	}
	r, closer, err := open()
	if err != nil {
		return err
	}
	defer closer()
	if err := t.Push(ctx, desc, r); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("uploading blob %s: %w", desc.Digest, err)
	}
	return nil
}

// config builds the ModelPack config.
func (md *Metadata) config(name string, created time.Time, layers []ocispec.Descriptor) *modelspec.Model {
	c := &modelspec.Model{
		Descriptor: modelspec.ModelDescriptor{
			CreatedAt:   &created,
			Name:        name,
			Family:      md.Family,
			Licenses:    md.Licenses,
			Title:       md.Title,
			Description: md.Description,
			Authors:     md.Authors,
			Vendor:      md.Vendor,
			Version:     md.Version,
			Revision:    md.Revision,
			DocURL:      md.DocURL,
			SourceURL:   md.SourceURL,
		},
		ModelFS: modelspec.ModelFS{Type: "layers"},
		Config: modelspec.ModelConfig{
			Architecture: md.Architecture,
			Format:       md.Format,
			ParamSize:    md.ParamSize,
			Precision:    md.Precision,
			Quantization: md.Quantization,
		},
	}
	if md.Name != "" {
		c.Descriptor.Name = md.Name
	}
	for _, l := range layers {
		c.ModelFS.DiffIDs = append(c.ModelFS.DiffIDs, l.Digest)
	}
	return c
}
