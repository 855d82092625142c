package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Size limits of the metadata files read for the model card. They are small
// files; anything larger is refused rather than read.
const (
	// MaxReadmeSize bounds README.md.
	MaxReadmeSize = 4 << 20
	// MaxFrontMatterSize bounds the YAML front matter inside README.md.
	MaxFrontMatterSize = 1 << 20
	// MaxConfigSize bounds config.json.
	MaxConfigSize = 4 << 20
	// MaxTokenizerConfigSize bounds tokenizer_config.json (chat templates
	// and added-token tables make it the largest of the three).
	MaxTokenizerConfigSize = 16 << 20
)

// Card is what a model's own small files say about it: the Hugging Face
// README front matter, config.json and tokenizer_config.json. Fields are
// empty when no file says.
type Card struct {
	// Licenses are the license values as written ("apache-2.0", "other").
	Licenses []string
	// LicenseName and LicenseLink describe an "other" license.
	LicenseName, LicenseLink string
	// Datasets are dataset ids or names the model was trained on.
	Datasets []string
	// BaseModels are the ids of the models this one derives from.
	BaseModels []string
	// Task is the Hugging Face pipeline tag ("text-generation").
	Task string
	// Languages are language codes.
	Languages []string
	// Library is the library the weights are for ("transformers").
	Library string
	// Metrics are metric names listed in the front matter.
	Metrics []string
	// Results are evaluation results from the front matter's model-index.
	Results []MetricResult
	// Tags are the front matter's tags.
	Tags []string
	// Architectures are config.json's architectures ("LlamaForCausalLM").
	Architectures []string
	// ModelType is config.json's model_type ("llama").
	ModelType string
	// DType is config.json's torch_dtype (or dtype).
	DType string
	// ChatTemplateSHA256 is the SHA-256 of tokenizer_config.json's chat
	// template, hex.
	ChatTemplateSHA256 string
}

// MetricResult is one evaluation result of a model-index.
type MetricResult struct {
	Type, Name, Value, Dataset, Split string
}

// readSmall reads a small file of the set whole, refusing files above limit.
func readSmall(f modelfs.File, limit int64) ([]byte, error) {
	if f.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes exceeds the %d byte limit for a metadata file", f.Name, f.Size, limit)
	}
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(io.NewSectionReader(r, 0, limit+1), limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than the %d byte limit for a metadata file", f.Name, limit)
	}
	return data, nil
}

// ReadCard reads README.md, config.json and tokenizer_config.json at the top
// of a model folder, when present. Problems with one file do not stop the
// others: they come back as errors naming the file.
func ReadCard(set *modelfs.Set) (Card, []error) {
	var c Card
	var errs []error
	if set.SingleFile {
		return c, nil
	}
	if f, ok := set.Get("README.md"); ok {
		if data, err := readSmall(f, MaxReadmeSize); err != nil {
			errs = append(errs, err)
		} else if err := c.parseReadme(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
		}
	}
	if f, ok := set.Get("config.json"); ok {
		if data, err := readSmall(f, MaxConfigSize); err != nil {
			errs = append(errs, err)
		} else if err := c.parseConfig(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
		}
	}
	if f, ok := set.Get("tokenizer_config.json"); ok {
		if data, err := readSmall(f, MaxTokenizerConfigSize); err != nil {
			errs = append(errs, err)
		} else if err := c.parseTokenizerConfig(data); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
		}
	}
	return c, errs
}

// FrontMatter returns the YAML front matter of a Markdown file: the lines
// between a first line "---" and the next line "---" (or "..."). It returns
// nil, nil when the file has none.
func FrontMatter(md []byte) ([]byte, error) {
	md = bytes.TrimPrefix(md, []byte("\ufeff"))
	first, rest, ok := bytes.Cut(md, []byte("\n"))
	if !ok || string(bytes.TrimRight(first, " \t\r")) != "---" {
		return nil, nil
	}
	off := 0
	for off <= len(rest) {
		line, _, _ := bytes.Cut(rest[off:], []byte("\n"))
		t := string(bytes.TrimRight(line, " \t\r"))
		if t == "---" || t == "..." {
			if off > MaxFrontMatterSize {
				return nil, fmt.Errorf("front matter: %d bytes exceeds the %d byte limit", off, MaxFrontMatterSize)
			}
			return rest[:off], nil
		}
		off += len(line) + 1
	}
	return nil, errors.New("front matter: no closing '---' line")
}

// ParseReadme extracts the model card fields of a Hugging Face README's
// front matter. A README without front matter gives an empty Card.
func ParseReadme(md []byte) (Card, error) {
	var c Card
	err := c.parseReadme(md)
	return c, err
}

func (c *Card) parseReadme(md []byte) error {
	if len(md) > MaxReadmeSize {
		return fmt.Errorf("%d bytes exceeds the %d byte limit", len(md), MaxReadmeSize)
	}
	fm, err := FrontMatter(md)
	if err != nil || fm == nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(fm, &doc); err != nil {
		return fmt.Errorf("front matter: %w", err)
	}
	c.Licenses = appendUnique(c.Licenses, stringList(doc["license"])...)
	c.LicenseName = firstNonEmpty(c.LicenseName, scalar(doc["license_name"]))
	c.LicenseLink = firstNonEmpty(c.LicenseLink, scalar(doc["license_link"]))
	c.Datasets = appendUnique(c.Datasets, stringList(doc["datasets"])...)
	c.BaseModels = appendUnique(c.BaseModels, stringList(doc["base_model"])...)
	c.Task = firstNonEmpty(c.Task, scalar(doc["pipeline_tag"]))
	c.Languages = appendUnique(c.Languages, stringList(doc["language"])...)
	c.Library = firstNonEmpty(c.Library, scalar(doc["library_name"]))
	c.Metrics = appendUnique(c.Metrics, stringList(doc["metrics"])...)
	c.Tags = appendUnique(c.Tags, stringList(doc["tags"])...)
	c.Results = append(c.Results, modelIndex(doc["model-index"])...)
	return nil
}

// modelIndex reads model-index: [{name, results: [{task, dataset, metrics}]}].
func modelIndex(v any) []MetricResult {
	var out []MetricResult
	for _, m := range asList(v) {
		mm, _ := m.(map[string]any)
		for _, r := range asList(mm["results"]) {
			rm, _ := r.(map[string]any)
			ds, _ := rm["dataset"].(map[string]any)
			dsName := firstNonEmpty(scalar(ds["name"]), scalar(ds["type"]))
			split := scalar(ds["split"])
			for _, x := range asList(rm["metrics"]) {
				xm, _ := x.(map[string]any)
				typ := scalar(xm["type"])
				if typ == "" {
					continue
				}
				out = append(out, MetricResult{Type: typ, Name: scalar(xm["name"]), Value: scalar(xm["value"]), Dataset: dsName, Split: split})
			}
		}
	}
	return out
}

// ParseConfig extracts architectures, model_type and the dtype of a
// transformers config.json.
func ParseConfig(data []byte) (Card, error) {
	var c Card
	err := c.parseConfig(data)
	return c, err
}

func (c *Card) parseConfig(data []byte) error {
	if len(data) > MaxConfigSize {
		return fmt.Errorf("%d bytes exceeds the %d byte limit", len(data), MaxConfigSize)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	c.Architectures = appendUnique(c.Architectures, stringList(doc["architectures"])...)
	c.ModelType = firstNonEmpty(c.ModelType, scalar(doc["model_type"]))
	c.DType = firstNonEmpty(c.DType, scalar(doc["torch_dtype"]), scalar(doc["dtype"]))
	// Multimodal configs keep the language model's fields in text_config.
	if tc, ok := doc["text_config"].(map[string]any); ok {
		c.DType = firstNonEmpty(c.DType, scalar(tc["torch_dtype"]), scalar(tc["dtype"]))
	}
	return nil
}

func (c *Card) parseTokenizerConfig(data []byte) error {
	if len(data) > MaxTokenizerConfigSize {
		return fmt.Errorf("%d bytes exceeds the %d byte limit", len(data), MaxTokenizerConfigSize)
	}
	var doc struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if len(doc.ChatTemplate) == 0 {
		return nil
	}
	var tmpl string
	if err := json.Unmarshal(doc.ChatTemplate, &tmpl); err != nil {
		// A list of named templates: the "default" one is the chat template.
		var named []struct{ Name, Template string }
		if json.Unmarshal(doc.ChatTemplate, &named) != nil {
			return nil
		}
		for _, n := range named {
			if n.Name == "default" {
				tmpl = n.Template
			}
		}
	}
	if tmpl != "" {
		sum := sha256.Sum256([]byte(tmpl))
		c.ChatTemplateSHA256 = hex.EncodeToString(sum[:])
	}
	return nil
}

// asList returns v as a list (a single value becomes a list of one).
func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	}
	return []any{v}
}

// stringList returns the scalar items of a string-or-list value.
func stringList(v any) []string {
	var out []string
	for _, x := range asList(v) {
		if s := scalar(x); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// scalar formats a YAML/JSON scalar as a string; other values give "".
func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return ""
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return ""
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// maxListItems bounds each list field of a card.
const maxListItems = 1024

// appendUnique appends the values not yet in list, keeping order, up to
// maxListItems values.
func appendUnique(list []string, vs ...string) []string {
	seen := make(map[string]bool, len(list))
	for _, x := range list {
		seen[x] = true
	}
	for _, v := range vs {
		if len(list) >= maxListItems {
			break
		}
		if !seen[v] {
			seen[v] = true
			list = append(list, v)
		}
	}
	return list
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
