package oci

import (
	"bytes"
	"encoding/json"
	"io"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// maxMetadataFile bounds the metadata files read (config.json, README.md).
const maxMetadataFile = 1 << 20

// Metadata is what the ModelPack config says about a model. ReadMetadata
// fills it from the same small files the BOM reads: the Hugging Face
// config.json and the README front matter.
type Metadata struct {
	Name, Title, Description, Family string
	Authors, Licenses                []string
	Vendor, Version, Revision        string
	DocURL, SourceURL                string
	Architecture, Format, ParamSize  string
	Precision, Quantization          string
}

// ReadMetadata reads config.json (architectures, model_type, torch_dtype)
// and the README front matter (license, base_model, library_name) of a
// model, and guesses the weight format from file names. Unreadable or
// malformed files leave fields empty; metadata never fails a push.
func ReadMetadata(set *modelfs.Set) *Metadata {
	md := &Metadata{}
	if f, ok := set.Get("config.json"); ok {
		var c struct {
			Architectures []string `json:"architectures"`
			ModelType     string   `json:"model_type"`
			TorchDtype    string   `json:"torch_dtype"`
			Dtype         string   `json:"dtype"`
			Quantization  struct {
				QuantMethod string `json:"quant_method"`
			} `json:"quantization_config"`
		}
		if data := readSmall(f); data != nil && json.Unmarshal(data, &c) == nil {
			if len(c.Architectures) > 0 {
				md.Architecture = bounded(c.Architectures[0])
			}
			md.Family = bounded(c.ModelType)
			md.Precision = bounded(c.TorchDtype)
			if md.Precision == "" {
				md.Precision = bounded(c.Dtype)
			}
			md.Quantization = bounded(c.Quantization.QuantMethod)
		}
	}
	for _, name := range []string{"README.md", "readme.md", "README.MD"} {
		f, ok := set.Get(name)
		if !ok {
			continue
		}
		fm := frontMatter(readSmall(f))
		var card struct {
			License     any    `yaml:"license"`
			LibraryName string `yaml:"library_name"`
			BaseModel   any    `yaml:"base_model"`
		}
		if fm != nil && yaml.Unmarshal(fm, &card) == nil {
			md.Licenses = stringList(card.License)
		}
		break
	}
	md.Format = guessFormat(set)
	return md
}

func bounded(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		if x != "" {
			return []string{bounded(x)}
		}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" && len(out) < 16 {
				out = append(out, bounded(s))
			}
		}
		return out
	}
	return nil
}

func readSmall(f modelfs.File) []byte {
	if f.Size > maxMetadataFile {
		return nil
	}
	r, err := f.Open()
	if err != nil {
		return nil
	}
	defer r.Close()
	data, err := io.ReadAll(io.NewSectionReader(r, 0, maxMetadataFile))
	if err != nil {
		return nil
	}
	return data
}

// frontMatter returns the YAML between the leading "---" lines of a README.
func frontMatter(data []byte) []byte {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if !bytes.HasPrefix(data, []byte("---")) {
		return nil
	}
	rest := data[3:]
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 || len(bytes.TrimSpace(rest[:nl])) != 0 {
		return nil
	}
	rest = rest[nl+1:]
	end := bytes.Index(rest, []byte("\n---"))
	if end < 0 {
		if bytes.HasPrefix(rest, []byte("---")) {
			return []byte{}
		}
		return nil
	}
	return rest[:end]
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
