package oci

import (
	"context"
	"encoding/json"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/sbom"
)

// maxMetadataFile bounds an artifact config read for its model name.
const maxMetadataFile = 1 << 20

// Metadata is what the ModelPack config says about a model. ReadMetadata
// fills it from the same model card the BOM uses.
type Metadata struct {
	Name, Title, Description, Family string
	Authors, Licenses                []string
	Vendor, Version, Revision        string
	DocURL, SourceURL                string
	Architecture, Format, ParamSize  string
	Precision, Quantization          string
}

// ReadMetadata fills the ModelPack config from the model card the BOM
// reads (sbom.ReadCard: README front matter, config.json) and guesses the
// weight format from file names. Unreadable or malformed files leave fields
// empty; metadata never fails a push.
func ReadMetadata(set *modelfs.Set) *Metadata {
	card, _ := sbom.ReadCard(set)
	md := &Metadata{
		Family:    bounded(card.ModelType),
		Precision: bounded(card.DType),
		Format:    guessFormat(set),
	}
	if len(card.Architectures) > 0 {
		md.Architecture = bounded(card.Architectures[0])
	}
	for _, l := range card.Licenses {
		if len(md.Licenses) < 16 {
			md.Licenses = append(md.Licenses, bounded(l))
		}
	}
	return md
}

func bounded(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}

func guessFormat(set *modelfs.Set) string {
	counts := map[string]int{}
	for _, f := range set.Files {
		switch strings.ToLower(path.Ext(f.Name)) {
		case ".safetensors":
			counts["safetensors"]++
		case ".gguf":
			counts["gguf"]++
		case ".onnx":
			counts["onnx"]++
		case ".bin", ".pt", ".pth", ".ckpt":
			counts["pytorch"]++
		case ".h5", ".keras", ".pb":
			counts["tensorflow"]++
		}
	}
	best, n := "", 0
	for _, k := range []string{"safetensors", "gguf", "onnx", "pytorch", "tensorflow"} {
		if counts[k] > n {
			best, n = k, counts[k]
		}
	}
	return best
}

// ModelName is the model's name for an OMS statement made from an
// artifact: the config's descriptor.name (ModelPack) or package.name
// (KitOps), else the last component of the repository (or layout folder).
func ModelName(ctx context.Context, repo *Repo, a *Artifact) string {
	if data, err := fetchSmall(ctx, repo.Target, a.Manifest.Config, maxMetadataFile); err == nil {
		var c struct {
			Descriptor struct {
				Name string `json:"name"`
			} `json:"descriptor"`
			Package struct {
				Name string `json:"name"`
			} `json:"package"`
		}
		if json.Unmarshal(data, &c) == nil {
			for _, n := range []string{c.Descriptor.Name, c.Package.Name} {
				if n != "" && len(n) <= 256 && utf8.ValidString(n) {
					return n
				}
			}
		}
	}
	if repo.Remote != nil {
		return path.Base(repo.Remote.Reference.Repository)
	}
	if dir, _, err := SplitLayoutRef(repo.Ref); err == nil {
		return filepath.Base(dir)
	}
	return "model"
}
