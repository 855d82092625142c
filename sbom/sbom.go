// Package sbom writes a CycloneDX ML-BOM (an AI bill of materials) for a
// model: the model as a machine-learning-model component with a model card
// filled from what its files say, every file as a component with the same
// SHA-256 digests the signer computes, datasets as data components, base
// models as pedigree ancestors, scan findings as vulnerabilities and the
// signature, when one verifies, as properties.
//
// Build is a function of a file set, its digests, the scan result and a
// verified signature; it reads nothing but small metadata files (README.md,
// config.json, tokenizer_config.json) and, for PyTorch zip checkpoints the
// scanner passed, the pickled tensor index. Open resolves the model sources
// (folder, file, Hugging Face cache entry, OCI layout) into a file set.
package sbom

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Property names modelseal writes (a "modelseal:" namespace, as CycloneDX's
// property taxonomy asks of tools).
const (
	PropCompleteness      = "modelseal:completeness"
	PropMissing           = "modelseal:missing"
	PropSignatureMethod   = "modelseal:signature:method"
	PropSignatureIdentity = "modelseal:signature:identity"
	PropSignatureIssuer   = "modelseal:signature:issuer"
	PropSignatureVerified = "modelseal:signature:verified"
	PropSignatureFile     = "modelseal:signature:file"
	PropSignatureDetail   = "modelseal:signature:detail"
	PropRootDigest        = "modelseal:oms:root-sha256"
	PropParameters        = "modelseal:model:parameters"
	PropTensors           = "modelseal:model:tensors"
	PropDTypes            = "modelseal:model:dtypes"
	PropFormat            = "modelseal:format"
	PropSize              = "modelseal:size"
)

// Model card fields the completeness score counts, in the order they are
// reported.
const (
	FieldLicense      = "license"
	FieldTask         = "task"
	FieldFamily       = "architectureFamily"
	FieldArchitecture = "modelArchitecture"
	FieldDatasets     = "datasets"
	FieldParameters   = "parameters"
	FieldPrecision    = "precision"
	FieldLanguage     = "language"
	FieldLibrary      = "library"
	FieldMetrics      = "metrics"
)

// CardFields lists every field the completeness score counts.
var CardFields = []string{FieldLicense, FieldTask, FieldFamily, FieldArchitecture, FieldDatasets,
	FieldParameters, FieldPrecision, FieldLanguage, FieldLibrary, FieldMetrics}

// Signature is what the caller learnt about the model's signature.
type Signature struct {
	// File is the signature file as named to the user.
	File string
	// Method is key, certificate or sigstore.
	Method string
	// Identity names the signer: the key's hint, the certificate subject,
	// or the keyless identity (certificate SAN).
	Identity string
	// Issuer is the OIDC issuer of a keyless signature.
	Issuer string
	// Verified is true only when the signature and signer were checked
	// with the user's verification material and every file matched.
	Verified bool
	// Detail says why a present signature is not verified.
	Detail string
}

// Input is what a BOM describes.
type Input struct {
	// Set is the model's files (required).
	Set *modelfs.Set
	// Digests are whole-file SHA-256 digests of Set (required), the ones
	// signing computes: compute once, share.
	Digests *digest.Result
	// Scan is the scan of Set's files, named by their names in the set (see
	// ScanSet); nil leaves out formats, format metadata and findings.
	Scan *scan.Result
	// Source is where the set came from; nil means a plain folder or file.
	Source *Source
	// Signature is the model's signature, if it has one.
	Signature *Signature
}

// Options tunes Build.
type Options struct {
	// Timestamp, when not zero, is written as metadata.timestamp. Leave it
	// zero for reproducible output.
	Timestamp time.Time
	// ToolVersion is modelseal's version, recorded in metadata.tools.
	ToolVersion string
	// RepoID is the Hugging Face repository id ("org/name") when the source
	// does not say it.
	RepoID string
}

// Result is a built BOM and what is missing from its model card.
type Result struct {
	BOM *cdx.BOM
	// Completeness is the fraction of CardFields found.
	Completeness float64
	// Missing are the CardFields not found.
	Missing []string
	// Warnings are metadata files that could not be read and similar
	// problems that did not stop the BOM.
	Warnings []string
}

// bomNamespace is the UUIDv5 namespace of BOM serial numbers.
var bomNamespace = uuid.MustParse("4f0c9f55-5b7a-5d0a-9a51-6d6f64656c73")

// SerialNumber is the BOM serial number of a model: a UUIDv5 of its OMS
// root digest, so the same model always gets the same serial number.
func SerialNumber(root []byte) string {
	return uuid.NewSHA1(bomNamespace, []byte(hex.EncodeToString(root))).URN()
}

// Encode writes bom as indented CycloneDX JSON of the given version (1.6 or
// 1.7).
func Encode(w io.Writer, bom *cdx.BOM, v cdx.SpecVersion) error {
	if v != cdx.SpecVersion1_6 && v != cdx.SpecVersion1_7 {
		return fmt.Errorf("CycloneDX %s is not supported (want 1.6 or 1.7)", v)
	}
	return cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON).SetPretty(true).EncodeVersion(bom, v)
}

// ParseSpecVersion parses "1.6" or "1.7".
func ParseSpecVersion(s string) (cdx.SpecVersion, error) {
	switch s {
	case "1.6", "":
		return cdx.SpecVersion1_6, nil
	case "1.7":
		return cdx.SpecVersion1_7, nil
	}
	return 0, fmt.Errorf("CycloneDX spec version %q is not supported (want 1.6 or 1.7)", s)
}

// props collects properties in a fixed order.
type props []cdx.Property

func (p *props) add(name, value string) {
	if value != "" {
		*p = append(*p, cdx.Property{Name: name, Value: value})
	}
}

func (p props) ptr() *[]cdx.Property {
	if len(p) == 0 {
		return nil
	}
	out := []cdx.Property(p)
	return &out
}

// maxPropertyValue bounds a property copied from scan metadata.
const maxPropertyValue = 4096

// formatValue renders a metadata value: strings as they are, the rest as
// JSON (which sorts map keys, so the output is stable).
func formatValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	if len(s) > maxPropertyValue {
		s = s[:maxPropertyValue] + "…"
	}
	return s
}

// toInt64 reads a count recorded by a scanner (any integer type, or a
// float64 from a decoded JSON report).
func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x > 1<<62 {
			return 1 << 62, true
		}
		return int64(x), true
	case float64:
		if x >= 0 && x < 1<<62 {
			return int64(x), true
		}
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

// toStrings reads a list of strings recorded by a scanner.
func toStrings(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// scanIndex maps set file names to their scan results.
func scanIndex(set *modelfs.Set, res *scan.Result) map[string]*scan.File {
	idx := map[string]*scan.File{}
	if res == nil {
		return idx
	}
	root := strings.TrimSuffix(strings.ReplaceAll(set.Root, "\\", "/"), "/")
	for i := range res.Files {
		f := &res.Files[i]
		p := strings.ReplaceAll(f.Path, "\\", "/")
		name := p
		if set.SingleFile && (p == root || p == set.Name) {
			name = set.Name
		} else if r, ok := strings.CutPrefix(p, root+"/"); ok && root != "" {
			if _, in := set.Get(r); in {
				name = r
			}
		}
		if _, in := set.Get(name); in {
			idx[name] = f
		}
	}
	return idx
}

// datasetExts are extensions of data files (kept as data components).
var datasetExts = map[string]bool{".parquet": true, ".arrow": true, ".csv": true, ".tsv": true,
	".jsonl": true, ".tfrecord": true, ".tfrecords": true}

// isDataset says whether a file of the set is a dataset rather than part of
// the model: an OCI dataset layer, a file in a top-level data or datasets
// folder, or a file with a tabular or record data extension.
func isDataset(name, mediaType string) bool {
	if strings.Contains(mediaType, ".dataset.") {
		return true
	}
	if top, _, ok := strings.Cut(name, "/"); ok && (top == "data" || top == "dataset" || top == "datasets") {
		return true
	}
	return datasetExts[strings.ToLower(path.Ext(name))]
}

// hfID matches a Hugging Face repository id.
var hfID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// hfPurl is the package URL of a Hugging Face model.
func hfPurl(id, rev string) string {
	p := "pkg:huggingface/" + id
	if rev != "" {
		p += "@" + strings.ToLower(rev)
	}
	return p
}

// severity maps a finding severity to CycloneDX's.
func severity(s finding.Severity) cdx.Severity {
	switch s {
	case finding.Critical:
		return cdx.SeverityCritical
	case finding.High:
		return cdx.SeverityHigh
	case finding.Medium:
		return cdx.SeverityMedium
	case finding.Low:
		return cdx.SeverityLow
	case finding.Info:
		return cdx.SeverityInfo
	}
	return cdx.SeverityUnknown
}

// scanPassed says whether the scanner found a file safe enough to hand to
// the metadata unpickler: no finding at medium or above, no scan error.
func scanPassed(sf *scan.File) bool {
	if sf == nil || len(sf.Errors) > 0 {
		return false
	}
	for _, f := range sf.Findings {
		if f.Severity >= finding.Medium {
			return false
		}
	}
	return true
}

// formatStats are the tensor statistics of the files of one format.
type formatStats struct {
	files      int
	tensors    int64
	parameters int64
	maxParams  int64
	dtypes     []string
	split      bool // every file looks like a shard of one model
}

var splitName = regexp.MustCompile(`-\d{5}-of-\d{5}\.`)

// Build writes the BOM of a model. It reads README.md, config.json and
// tokenizer_config.json when the set has them, the small files of a Hugging
// Face cache snapshot to check their git blob names, and the data.pkl of
// PyTorch zip checkpoints that the scan passed; nothing else.
func Build(ctx context.Context, in Input, opts Options) (*Result, error) {
	set, dg := in.Set, in.Digests
	if set == nil || dg == nil {
		return nil, fmt.Errorf("sbom: a file set and its digests are required")
	}
	if dg.Algorithm != digest.SHA256 || dg.ShardSize != 0 || len(dg.Items) != len(set.Files) {
		return nil, fmt.Errorf("sbom: want whole-file sha256 digests of every file, got %s digests (shard size %d) of %d items for %d files",
			dg.Algorithm, dg.ShardSize, len(dg.Items), len(set.Files))
	}
	src := in.Source
	if src == nil {
		src = &Source{Kind: KindFolder}
		if set.SingleFile {
			src.Kind = KindFile
		}
	}
	res := &Result{}
	warn := func(format string, args ...any) { res.Warnings = append(res.Warnings, fmt.Sprintf(format, args...)) }

	card, errs := ReadCard(set)
	for _, err := range errs {
		warn("%v", err)
	}
	scans := scanIndex(set, in.Scan)
	sums := make([][]byte, len(dg.Items))
	for i, it := range dg.Items {
		sums[i] = it.Sum
	}
	root := digest.Root(sums)

	repoID := firstNonEmpty(src.RepoID, opts.RepoID)
	modelName := set.Name
	if repoID != "" {
		modelName = repoID
	}
	modelRef := "model:" + modelName

	// Files.
	var components []cdx.Component
	var fileRefs []string
	stats := map[string]*formatStats{}
	gguf := map[string]any{}
	var onnxProducer, onnxOpsets, chatTemplate string
	for i, f := range set.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sum := dg.Items[i].Hex()
		ref := "file:" + f.Name
		fileRefs = append(fileRefs, ref)
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeFile, Name: f.Name,
			Hashes: &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sum}}}
		var p props
		p.add(PropSize, strconv.FormatInt(f.Size, 10))
		mt := src.MediaTypes[f.Name]
		if isDataset(f.Name, mt) {
			c.Type = cdx.ComponentTypeData
			c.Data = &[]cdx.ComponentData{{Type: cdx.ComponentDataTypeDataset, Name: f.Name}}
		}
		p.add("modelseal:oci:mediaType", mt)
		if want := src.LayerDigests[f.Name]; want != "" && want != "sha256:"+sum {
			return nil, fmt.Errorf("oci layout: %s: content sha256:%s does not match its layer digest %s", f.Name, sum, want)
		}
		if blob := src.Blobs[f.Name]; blob != "" {
			p.add("modelseal:huggingface:blob", blob)
			if ok, checked := checkBlob(f, blob, sum); checked {
				p.add("modelseal:huggingface:blob-verified", strconv.FormatBool(ok))
				if !ok {
					warn("%s: content does not match its Hugging Face cache blob name %s", f.Name, blob)
				}
			}
		}
		if f.Name == "chat_template.jinja" {
			chatTemplate = sum
		}
		if sf := scans[f.Name]; sf != nil {
			p.add(PropFormat, strings.Join(sf.Formats, ","))
			if len(sf.Errors) > 0 {
				p.add("modelseal:scan:errors", strconv.Itoa(len(sf.Errors)))
			}
			if len(sf.Unscanned) > 0 {
				p.add("modelseal:scan:unscanned", strconv.Itoa(len(sf.Unscanned)))
			}
			for _, k := range sortedKeys(sf.Metadata) {
				p.add("modelseal:meta:"+k, formatValue(sf.Metadata[k]))
			}
			collectStats(f, sf, stats, gguf, &onnxProducer, &onnxOpsets, &chatTemplate, &p, warn)
		}
		c.Properties = p.ptr()
		components = append(components, c)
	}

	// Datasets named by the model card.
	var datasetRefs []cdx.MLDatasetChoice
	for _, d := range append(slices.Clone(card.Datasets), ggufList(gguf, "dataset")...) {
		ref := "dataset:" + d
		if slices.ContainsFunc(datasetRefs, func(x cdx.MLDatasetChoice) bool { return x.Ref == ref }) {
			continue
		}
		dc := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeData, Name: d,
			Data: &[]cdx.ComponentData{{Type: cdx.ComponentDataTypeDataset, Name: d}}}
		if hfID.MatchString(d) {
			dc.ExternalReferences = &[]cdx.ExternalReference{{Type: cdx.ERTypeDistribution, URL: "https://huggingface.co/datasets/" + d}}
		}
		components = append(components, dc)
		datasetRefs = append(datasetRefs, cdx.MLDatasetChoice{Ref: ref})
	}

	// The model.
	model := cdx.Component{BOMRef: modelRef, Type: cdx.ComponentTypeMachineLearningModel, Name: modelName}
	if org, name, ok := strings.Cut(repoID, "/"); ok {
		model.Group, model.Name = org, name
	}
	if repoID != "" {
		model.PackageURL = hfPurl(repoID, src.Revision)
	}
	model.Version = src.Revision
	if src.Kind == KindOCILayout {
		model.Version = ""
	}
	var ociCfg *ModelPackConfig = src.OCIConfig
	if ociCfg != nil {
		model.Version = firstNonEmpty(ociCfg.Descriptor.Version, model.Version)
		if len(ociCfg.Descriptor.Authors) > 0 {
			var authors []cdx.OrganizationalContact
			for _, a := range ociCfg.Descriptor.Authors {
				authors = append(authors, cdx.OrganizationalContact{Name: a})
			}
			model.Authors = &authors
		}
	}
	if a := ggufString(gguf, "author"); a != "" && model.Authors == nil {
		model.Authors = &[]cdx.OrganizationalContact{{Name: a}}
	}
	model.Description = ggufString(gguf, "description")
	if len(card.Tags) > 0 {
		tags := slices.Clone(card.Tags)
		model.Tags = &tags
	}

	// Licenses.
	licenseVals := card.Licenses
	if len(licenseVals) == 0 {
		licenseVals = appendUnique(nil, ggufString(gguf, "license"))
		if licenseVals[0] == "" {
			licenseVals = nil
		}
	}
	if len(licenseVals) == 0 && ociCfg != nil {
		licenseVals = ociCfg.Descriptor.Licenses
	}
	var licenses cdx.Licenses
	for _, l := range licenseVals {
		lic := &cdx.License{Acknowledgement: cdx.LicenseAcknowledgementDeclared}
		switch id, ok := SPDXID(l); {
		case strings.EqualFold(l, "other") && card.LicenseName != "":
			lic.Name = card.LicenseName
		case ok:
			lic.ID = id
		default:
			lic.Name = l
		}
		if card.LicenseLink != "" && lic.ID == "" && len(licenseVals) == 1 && strings.HasPrefix(card.LicenseLink, "http") {
			lic.URL = card.LicenseLink
		}
		licenses = append(licenses, cdx.LicenseChoice{License: lic})
	}
	if len(licenses) > 0 {
		model.Licenses = &licenses
	}

	// Tensor statistics: the first weight format present, summed over its
	// files (the shards of one model) or, for several unsplit GGUF files
	// (alternative quantisations), the largest.
	var params, tensors int64
	var dtypes []string
	for _, fmtName := range []string{"safetensors", "gguf", "pytorch", "onnx"} {
		s := stats[fmtName]
		if s == nil || s.parameters == 0 && s.tensors == 0 {
			continue
		}
		params, tensors, dtypes = s.parameters, s.tensors, s.dtypes
		if fmtName == "gguf" && s.files > 1 && !s.split {
			params = s.maxParams
		}
		break
	}
	slices.Sort(dtypes)
	dtypes = slices.Compact(dtypes)

	// Model card.
	mp := &cdx.MLModelParameters{Task: card.Task}
	mp.ArchitectureFamily = firstNonEmpty(card.ModelType, ggufString(gguf, "architecture"))
	mp.ModelArchitecture = firstNonEmpty(strings.Join(card.Architectures, ", "), ggufString(gguf, "architecture"))
	if ociCfg != nil {
		mp.ArchitectureFamily = firstNonEmpty(mp.ArchitectureFamily, ociCfg.Descriptor.Family)
		mp.ModelArchitecture = firstNonEmpty(mp.ModelArchitecture, ociCfg.Config.Architecture)
	}
	if len(datasetRefs) > 0 {
		mp.Datasets = &datasetRefs
	}
	mc := &cdx.MLModelCard{BOMRef: modelRef + ":card"}
	if *mp != (cdx.MLModelParameters{}) {
		mc.ModelParameters = mp
	}
	var metrics []cdx.MLPerformanceMetric
	for _, r := range card.Results {
		slice := r.Dataset
		if r.Split != "" {
			slice += " (" + r.Split + ")"
		}
		metrics = append(metrics, cdx.MLPerformanceMetric{Type: r.Type, Value: r.Value, Slice: slice})
	}
	for _, m := range card.Metrics {
		if !slices.ContainsFunc(metrics, func(x cdx.MLPerformanceMetric) bool { return x.Type == m }) {
			metrics = append(metrics, cdx.MLPerformanceMetric{Type: m})
		}
	}
	if len(metrics) > 0 {
		mc.QuantitativeAnalysis = &cdx.MLQuantitativeAnalysis{PerformanceMetrics: &metrics}
	}
	model.ModelCard = mc

	// Base models.
	var ancestors []cdx.Component
	for _, b := range append(slices.Clone(card.BaseModels), ggufList(gguf, "base_model")...) {
		ref := "base-model:" + b
		if slices.ContainsFunc(ancestors, func(x cdx.Component) bool { return x.BOMRef == ref }) {
			continue
		}
		a := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeMachineLearningModel, Name: b}
		if hfID.MatchString(b) && strings.Contains(b, "/") {
			org, name, _ := strings.Cut(b, "/")
			a.Group, a.Name = org, name
			a.PackageURL = hfPurl(b, "")
			a.ExternalReferences = &[]cdx.ExternalReference{{Type: cdx.ERTypeDistribution, URL: "https://huggingface.co/" + b}}
		}
		ancestors = append(ancestors, a)
	}
	if len(ancestors) > 0 {
		model.Pedigree = &cdx.Pedigree{Ancestors: &ancestors}
	}

	// External references.
	var ext []cdx.ExternalReference
	if repoID != "" {
		u := "https://huggingface.co/" + repoID
		rev := firstNonEmpty(src.Revision, "main")
		ext = append(ext,
			cdx.ExternalReference{Type: cdx.ERTypeModelCard, URL: u + "/blob/" + rev + "/README.md"},
			cdx.ExternalReference{Type: cdx.ERTypeVCS, URL: u},
			cdx.ExternalReference{Type: cdx.ERTypeDistribution, URL: u + "/tree/" + rev})
	}
	if u := ggufString(gguf, "repo_url"); strings.HasPrefix(u, "https://") && repoID == "" {
		ext = append(ext, cdx.ExternalReference{Type: cdx.ERTypeVCS, URL: u})
	}
	if ociCfg != nil {
		if u := ociCfg.Descriptor.DocURL; strings.HasPrefix(u, "https://") {
			ext = append(ext, cdx.ExternalReference{Type: cdx.ERTypeModelCard, URL: u})
		}
		if u := ociCfg.Descriptor.SourceURL; strings.HasPrefix(u, "https://") {
			ext = append(ext, cdx.ExternalReference{Type: cdx.ERTypeVCS, URL: u})
		}
	}
	if len(ext) > 0 {
		model.ExternalReferences = &ext
	}

	// Completeness.
	precision := len(dtypes) > 0 || card.DType != "" || (ociCfg != nil && ociCfg.Config.Precision != "")
	have := map[string]bool{
		FieldLicense:      len(licenses) > 0,
		FieldTask:         mp.Task != "",
		FieldFamily:       mp.ArchitectureFamily != "",
		FieldArchitecture: mp.ModelArchitecture != "",
		FieldDatasets:     len(datasetRefs) > 0,
		FieldParameters:   params > 0 || (ociCfg != nil && ociCfg.Config.ParamSize != ""),
		FieldPrecision:    precision,
		FieldLanguage:     len(card.Languages) > 0 || len(ggufList(gguf, "languages")) > 0,
		FieldLibrary:      card.Library != "",
		FieldMetrics:      len(metrics) > 0,
	}
	found := 0
	for _, f := range CardFields {
		if have[f] {
			found++
		} else {
			res.Missing = append(res.Missing, f)
		}
	}
	res.Completeness = float64(found) / float64(len(CardFields))

	// Model properties.
	var p props
	p.add(PropCompleteness, strconv.FormatFloat(res.Completeness, 'f', 2, 64))
	p = append(p, cdx.Property{Name: PropMissing, Value: strings.Join(res.Missing, ",")})
	if params > 0 {
		p.add(PropParameters, strconv.FormatInt(params, 10))
	}
	if tensors > 0 {
		p.add(PropTensors, strconv.FormatInt(tensors, 10))
	}
	p.add(PropDTypes, strings.Join(dtypes, ","))
	p.add("modelseal:model:config-dtype", card.DType)
	p.add("modelseal:model:language", strings.Join(appendUnique(slices.Clone(card.Languages), ggufList(gguf, "languages")...), ","))
	p.add("modelseal:model:library", card.Library)
	p.add("modelseal:model:chat-template-sha256", firstNonEmpty(card.ChatTemplateSHA256, chatTemplate))
	p.add("modelseal:onnx:producer", onnxProducer)
	p.add("modelseal:onnx:opsets", onnxOpsets)
	for _, k := range sortedKeys(gguf) {
		p.add("modelseal:gguf:general."+k, formatValue(gguf[k]))
	}
	if ociCfg != nil {
		p.add("modelseal:modelpack:format", ociCfg.Config.Format)
		p.add("modelseal:modelpack:paramSize", ociCfg.Config.ParamSize)
		p.add("modelseal:modelpack:precision", ociCfg.Config.Precision)
		p.add("modelseal:modelpack:quantization", ociCfg.Config.Quantization)
	}
	p.add("modelseal:source", src.Kind)
	p.add("modelseal:source:revision", src.Revision)
	p.add("modelseal:oci:ref", src.Ref)
	p.add(PropRootDigest, hex.EncodeToString(root))
	if sig := in.Signature; sig != nil {
		p.add(PropSignatureFile, sig.File)
		p.add(PropSignatureMethod, firstNonEmpty(sig.Method, "unknown"))
		p.add(PropSignatureIdentity, sig.Identity)
		p.add(PropSignatureIssuer, sig.Issuer)
		p.add(PropSignatureVerified, strconv.FormatBool(sig.Verified))
		p.add(PropSignatureDetail, sig.Detail)
	}
	model.Properties = p.ptr()

	// Findings.
	var vulns []cdx.Vulnerability
	for _, f := range set.Files {
		sf := scans[f.Name]
		if sf == nil {
			continue
		}
		for _, fd := range sf.Findings {
			var vp props
			vp.add("modelseal:finding:rule", fd.Rule)
			vp.add("modelseal:finding:location", fd.Location.String())
			vp.add("modelseal:finding:global", fd.Global)
			for _, k := range sortedKeys(fd.Evidence) {
				vp.add("modelseal:finding:evidence:"+k, fd.Evidence[k])
			}
			vulns = append(vulns, cdx.Vulnerability{
				ID:          fd.Rule + ":" + fd.Location.String(),
				Source:      &cdx.Source{Name: "modelseal"},
				Ratings:     &[]cdx.VulnerabilityRating{{Source: &cdx.Source{Name: "modelseal"}, Severity: severity(fd.Severity), Method: cdx.ScoringMethodOther}},
				Description: fd.Message,
				Affects:     &[]cdx.Affects{{Ref: "file:" + f.Name}},
				Properties:  vp.ptr(),
			})
		}
	}

	bom := cdx.NewBOM()
	bom.SerialNumber = SerialNumber(root)
	tool := cdx.Component{Type: cdx.ComponentTypeApplication, Name: "modelseal", Version: opts.ToolVersion}
	bom.Metadata = &cdx.Metadata{Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{tool}}, Component: &model}
	if !opts.Timestamp.IsZero() {
		bom.Metadata.Timestamp = opts.Timestamp.UTC().Format(time.RFC3339)
	}
	bom.Components = &components
	deps := slices.Clone(fileRefs)
	for _, d := range datasetRefs {
		deps = append(deps, d.Ref)
	}
	bom.Dependencies = &[]cdx.Dependency{{Ref: modelRef, Dependencies: &deps}}
	if len(vulns) > 0 {
		bom.Vulnerabilities = &vulns
	}
	res.BOM = bom
	return res, nil
}

// collectStats gathers one file's format metadata into the per-format
// statistics and the model-level values.
func collectStats(f modelfs.File, sf *scan.File, stats map[string]*formatStats, gguf map[string]any,
	onnxProducer, onnxOpsets, chatTemplate *string, p *props, warn func(string, ...any)) {
	md := sf.Metadata
	add := func(format string, tensors, params int64, dtypes []string) {
		s := stats[format]
		if s == nil {
			s = &formatStats{split: true}
			stats[format] = s
		}
		s.files++
		s.tensors += tensors
		s.parameters += params
		s.maxParams = max(s.maxParams, params)
		s.dtypes = append(s.dtypes, dtypes...)
		if !splitName.MatchString(f.Name) {
			s.split = false
		}
	}
	for _, format := range []string{"safetensors", "gguf", "onnx"} {
		t, okT := toInt64(md[format+".tensors"])
		n, okN := toInt64(md[format+".parameters"])
		if okT || okN {
			add(format, t, n, toStrings(md[format+".dtypes"]))
		}
	}
	for k, v := range md {
		if g, ok := strings.CutPrefix(k, "gguf.general."); ok {
			if _, dup := gguf[g]; !dup {
				gguf[g] = v
			}
		}
	}
	if s, ok := md["gguf.chat_template.sha256"].(string); ok && *chatTemplate == "" {
		*chatTemplate = s
	}
	if s := formatValue(md["onnx.producer"]); s != "" && md["onnx.producer"] != nil && *onnxProducer == "" {
		*onnxProducer = s
		if v, ok := md["onnx.producer_version"]; ok {
			*onnxProducer += " " + formatValue(v)
		}
	}
	if v, ok := md["onnx.opsets"]; ok && *onnxOpsets == "" {
		*onnxOpsets = formatValue(v)
	}
	if slices.Contains(sf.Formats, "pytorch-zip") {
		if !scanPassed(sf) {
			p.add("modelseal:pytorch:metadata", "not read: the scan did not pass this file")
			return
		}
		st, err := TorchZipStats(f)
		if err != nil {
			warn("%v", err)
			p.add("modelseal:pytorch:metadata", "not read: "+err.Error())
			return
		}
		p.add("modelseal:pytorch:tensors", strconv.Itoa(st.Tensors))
		p.add("modelseal:pytorch:parameters", strconv.FormatInt(st.Parameters, 10))
		p.add("modelseal:pytorch:dtypes", strings.Join(st.DTypes, ","))
		add("pytorch", int64(st.Tensors), st.Parameters, st.DTypes)
	}
}

// ggufString returns a general.* GGUF key as a string.
func ggufString(gguf map[string]any, key string) string {
	if s, ok := gguf[key].(string); ok {
		return strings.TrimSpace(s)
	}
	return ""
}

// ggufList returns the names of a GGUF list (general.base_model.N.name,
// general.dataset.N.name) or the strings of an array key (general.languages).
func ggufList(gguf map[string]any, key string) []string {
	var out []string
	out = append(out, toStrings(gguf[key])...)
	for i := 0; i < 64; i++ {
		pre := key + "." + strconv.Itoa(i) + "."
		id := firstNonEmpty(hfRepoFromURL(ggufString(gguf, pre+"repo_url")), ggufString(gguf, pre+"name"))
		if id == "" {
			break
		}
		out = append(out, id)
	}
	return out
}

// hfRepoFromURL returns org/name of a https://huggingface.co/org/name URL.
func hfRepoFromURL(u string) string {
	rest, ok := strings.CutPrefix(u, "https://huggingface.co/")
	if !ok {
		return ""
	}
	rest = strings.Trim(rest, "/")
	if hfID.MatchString(rest) && strings.Contains(rest, "/") {
		return rest
	}
	return ""
}

// maxGitBlobCheck bounds the small files whose git blob id is recomputed.
const maxGitBlobCheck = 16 << 20

// checkBlob compares a Hugging Face cache file with the name of its blob:
// the sha256 for LFS files, the git blob SHA-1 for small files. checked is
// false when the name is neither or the file is too large to recheck.
func checkBlob(f modelfs.File, blob, sha256Hex string) (ok, checked bool) {
	switch len(blob) {
	case 64:
		return blob == sha256Hex, true
	case 40:
		if f.Size > maxGitBlobCheck {
			return false, false
		}
		r, err := f.Open()
		if err != nil {
			return false, false
		}
		defer r.Close()
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", f.Size)
		if _, err := io.Copy(h, io.NewSectionReader(r, 0, f.Size)); err != nil {
			return false, false
		}
		return hex.EncodeToString(h.Sum(nil)) == blob, true
	}
	return false, false
}
