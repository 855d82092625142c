package sbom

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/sbom/cdxschema"
	"github.com/modelseal/modelseal/scanners/all"
)

const (
	hfFixture    = "../fixtures/bom/hf-model"
	torchFixture = "../fixtures/benign/torch_zip_state_dict.pt"
	schemaDir    = "../testdata/cyclonedx"
)

var validator = sync.OnceValues(func() (*cdxschema.Validator, error) { return cdxschema.New(schemaDir) })

// encodeValid encodes a BOM in both spec versions and validates each
// against the official schema; it returns the 1.6 JSON.
func encodeValid(t *testing.T, bom *cdx.BOM) []byte {
	t.Helper()
	v, err := validator()
	if err != nil {
		t.Fatal(err)
	}
	var out16 []byte
	for _, ver := range []cdx.SpecVersion{cdx.SpecVersion1_6, cdx.SpecVersion1_7} {
		var buf bytes.Buffer
		if err := Encode(&buf, bom, ver); err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(buf.Bytes()); err != nil {
			t.Fatalf("CycloneDX %s schema: %v\n%s", ver, err, buf.String())
		}
		if ver == cdx.SpecVersion1_6 {
			out16 = buf.Bytes()
		}
	}
	return out16
}

// build lists, hashes, scans and builds the BOM of a source.
func build(t *testing.T, path string, oo OpenOptions, in Input, opts Options) (*Result, []byte) {
	t.Helper()
	ctx := context.Background()
	src, set, err := Open(path, oo)
	if err != nil {
		t.Fatal(err)
	}
	dg, err := digest.Compute(ctx, set, digest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := ScanSet(ctx, set, scan.Options{Scanners: all.Scanners()})
	if err != nil {
		t.Fatal(err)
	}
	in.Set, in.Digests, in.Scan, in.Source = set, dg, sr, src
	res, err := Build(ctx, in, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res, encodeValid(t, res.BOM)
}

func prop(ps *[]cdx.Property, name string) (string, bool) {
	if ps == nil {
		return "", false
	}
	for _, p := range *ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

func component(bom *cdx.BOM, ref string) *cdx.Component {
	for i, c := range *bom.Components {
		if c.BOMRef == ref {
			return &(*bom.Components)[i]
		}
	}
	return nil
}

// TestHuggingFaceFolder checks the model card, files, datasets, base model
// and references of the Hugging Face-shaped fixture.
func TestHuggingFaceFolder(t *testing.T) {
	res, out := build(t, hfFixture, OpenOptions{}, Input{}, Options{RepoID: "modelseal-test/tiny-llama", ToolVersion: "test"})
	bom := res.BOM
	m := bom.Metadata.Component
	if m.Type != cdx.ComponentTypeMachineLearningModel || m.Group != "modelseal-test" || m.Name != "tiny-llama" {
		t.Errorf("model component = %s %s/%s", m.Type, m.Group, m.Name)
	}
	mp := m.ModelCard.ModelParameters
	checks := []struct{ name, got, want string }{
		{"task", mp.Task, "text-generation"},
		{"family", mp.ArchitectureFamily, "llama"},
		{"architecture", mp.ModelArchitecture, "LlamaForCausalLM"},
		{"license id", (*m.Licenses)[0].License.ID, "Apache-2.0"},
		{"purl", m.PackageURL, "pkg:huggingface/modelseal-test/tiny-llama"},
		{"base model", (*m.Pedigree.Ancestors)[0].BOMRef, "base-model:modelseal-test/tiny-base"},
		{"dataset ref", (*mp.Datasets)[1].Ref, "dataset:modelseal-test/tiny-instructions"},
		{"first metric", (*m.ModelCard.QuantitativeAnalysis.PerformanceMetrics)[0].Value, "42.5"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	wantProps := map[string]string{
		PropParameters: "27", PropTensors: "3", PropDTypes: "BF16,F32", PropCompleteness: "1.00", PropMissing: "",
		"modelseal:model:language": "en,fr", "modelseal:model:library": "transformers", "modelseal:model:config-dtype": "float32",
	}
	for k, want := range wantProps {
		if got, ok := prop(m.Properties, k); !ok || got != want {
			t.Errorf("property %s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	var refs []string
	for _, er := range *m.ExternalReferences {
		refs = append(refs, string(er.Type))
	}
	if !slices.Equal(refs, []string{"model-card", "vcs", "distribution"}) {
		t.Errorf("external references %v", refs)
	}
	// Every file, with the digest the signer computes.
	set, _ := modelfs.Open(hfFixture, modelfs.Options{})
	dg, _ := digest.Compute(context.Background(), set, digest.Options{})
	for i, f := range set.Files {
		c := component(bom, "file:"+f.Name)
		if c == nil || c.Type != cdx.ComponentTypeFile || (*c.Hashes)[0].Value != dg.Items[i].Hex() {
			t.Errorf("file %s: component %+v", f.Name, c)
		}
	}
	if c := component(bom, "file:model.safetensors"); c != nil {
		if v, _ := prop(c.Properties, PropFormat); v != "safetensors" {
			t.Errorf("model.safetensors format = %q", v)
		}
	}
	for _, d := range []string{"wikitext", "modelseal-test/tiny-instructions"} {
		if c := component(bom, "dataset:"+d); c == nil || c.Type != cdx.ComponentTypeData {
			t.Errorf("dataset %s: %+v", d, c)
		}
	}
	if res.Completeness != 1 || len(res.Missing) != 0 {
		t.Errorf("completeness %v, missing %v", res.Completeness, res.Missing)
	}
	if strings.Contains(string(out), `"timestamp"`) {
		t.Error("timestamp written without Options.Timestamp")
	}
	// Deterministic: the same input gives the same bytes.
	_, again := build(t, hfFixture, OpenOptions{}, Input{}, Options{RepoID: "modelseal-test/tiny-llama", ToolVersion: "test"})
	if !bytes.Equal(out, again) {
		t.Error("two builds of the same model differ")
	}
	if !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") {
		t.Errorf("serial %q", bom.SerialNumber)
	}
}

// TestTimestampOptIn checks metadata.timestamp appears only when asked.
func TestTimestampOptIn(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	res, out := build(t, hfFixture, OpenOptions{}, Input{}, Options{Timestamp: ts})
	if res.BOM.Metadata.Timestamp != "2026-01-02T03:04:05Z" || !bytes.Contains(out, []byte(`"timestamp": "2026-01-02T03:04:05Z"`)) {
		t.Errorf("timestamp = %q", res.BOM.Metadata.Timestamp)
	}
}

// TestSchemaRejectsWrongComponentType proves the validation can fail: a
// component type outside the schema's enum is refused.
func TestSchemaRejectsWrongComponentType(t *testing.T) {
	res, out := build(t, hfFixture, OpenOptions{}, Input{}, Options{})
	v, err := validator()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(doc map[string]any)
	}{
		{"model type", func(doc map[string]any) {
			doc["metadata"].(map[string]any)["component"].(map[string]any)["type"] = "ml-model"
		}},
		{"file type", func(doc map[string]any) {
			doc["components"].([]any)[0].(map[string]any)["type"] = "weights"
		}},
		{"hash length", func(doc map[string]any) {
			doc["components"].([]any)[0].(map[string]any)["hashes"].([]any)[0].(map[string]any)["content"] = "abc"
		}},
	}
	for _, c := range cases {
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatal(err)
		}
		c.edit(doc)
		bad, _ := json.Marshal(doc)
		if err := v.Validate(bad); err == nil {
			t.Errorf("%s: a broken BOM passed the schema", c.name)
		}
	}
	_ = res
}

// TestLicenses maps front matter licenses to SPDX ids or names.
func TestLicenses(t *testing.T) {
	cases := []struct {
		front    string
		ids      []string
		names    []string
		hasURL   bool
		complete bool
	}{
		{"license: apache-2.0", []string{"Apache-2.0"}, nil, false, true},
		{"license: MIT", []string{"MIT"}, nil, false, true},
		{"license: cc-by-nc-4.0", []string{"CC-BY-NC-4.0"}, nil, false, true},
		{"license: llama3", nil, []string{"llama3"}, false, true},
		{"license: other\nlicense_name: acme-model-license\nlicense_link: https://example.com/LICENSE", nil, []string{"acme-model-license"}, true, true},
		{"license: [mit, openrail]", []string{"MIT"}, []string{"openrail"}, false, true},
		{"pipeline_tag: fill-mask", nil, nil, false, false},
	}
	for _, c := range cases {
		dir := t.TempDir()
		write(t, dir, "README.md", "---\n"+c.front+"\n---\n# m\n")
		res, _ := build(t, dir, OpenOptions{}, Input{}, Options{})
		var ids, names []string
		url := false
		if ls := res.BOM.Metadata.Component.Licenses; ls != nil {
			for _, l := range *ls {
				if l.License.ID != "" {
					ids = append(ids, l.License.ID)
				} else {
					names = append(names, l.License.Name)
				}
				url = url || l.License.URL != ""
			}
		}
		if !slices.Equal(ids, c.ids) || !slices.Equal(names, c.names) || url != c.hasURL {
			t.Errorf("%q: ids %v names %v url %v", c.front, ids, names, url)
		}
		if got := !slices.Contains(res.Missing, FieldLicense); got != c.complete {
			t.Errorf("%q: license counted %v", c.front, got)
		}
	}
}

// TestSPDXListIsTheSchemas checks the embedded SPDX list is the official
// schema file the tests validate with.
func TestSPDXListIsTheSchemas(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(schemaDir, "spdx.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spdxSchema, want) {
		t.Error("sbom/spdx.schema.json differs from testdata/cyclonedx/spdx.schema.json")
	}
	if id, ok := SPDXID("apache-2.0"); !ok || id != "Apache-2.0" {
		t.Errorf("SPDXID(apache-2.0) = %q, %v", id, ok)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFindingsAndTorch puts a benign checkpoint and a malicious pickle in a
// folder: the pickle's findings become vulnerabilities affecting its file;
// the checkpoint's tensors are counted; a malicious checkpoint is never
// unpickled.
func TestFindingsAndTorch(t *testing.T) {
	dir := t.TempDir()
	copyFile(t, torchFixture, filepath.Join(dir, "pytorch_model.bin"))
	copyFile(t, "../fixtures/malicious/reduce_os_system_harmless.pkl", filepath.Join(dir, "extra/payload.pkl"))
	copyFile(t, "../fixtures/malicious/torch_zip_data_pkl_harmless.pt", filepath.Join(dir, "evil.pt"))
	res, _ := build(t, dir, OpenOptions{}, Input{}, Options{})
	bom := res.BOM
	if bom.Vulnerabilities == nil {
		t.Fatal("no vulnerabilities")
	}
	affected := map[string]cdx.Severity{}
	for _, v := range *bom.Vulnerabilities {
		ref := (*v.Affects)[0].Ref
		sev := (*v.Ratings)[0].Severity
		if !strings.Contains(v.ID, ":") || v.Description == "" || component(bom, ref) == nil {
			t.Errorf("vulnerability %+v", v)
		}
		if affected[ref] == "" || sev == cdx.SeverityCritical {
			affected[ref] = sev
		}
	}
	for _, ref := range []string{"file:extra/payload.pkl", "file:evil.pt"} {
		if s := affected[ref]; s != cdx.SeverityCritical && s != cdx.SeverityHigh {
			t.Errorf("%s: severity %q, want critical or high", ref, s)
		}
	}
	if _, ok := affected["file:pytorch_model.bin"]; ok {
		t.Error("the benign checkpoint has a vulnerability")
	}
	// Linear(4,3)+BatchNorm1d(3)+ReLU+Linear(3,2): weights, biases, BN
	// running stats and num_batches_tracked.
	good := component(bom, "file:pytorch_model.bin")
	if v, _ := prop(good.Properties, "modelseal:pytorch:tensors"); v != "9" {
		t.Errorf("pytorch tensors = %q, want 9", v)
	}
	if v, _ := prop(good.Properties, "modelseal:pytorch:parameters"); v != "36" {
		t.Errorf("pytorch parameters = %q, want 36", v)
	}
	evil := component(bom, "file:evil.pt")
	if v, _ := prop(evil.Properties, "modelseal:pytorch:metadata"); !strings.Contains(v, "did not pass") {
		t.Errorf("malicious checkpoint metadata note = %q", v)
	}
	if _, ok := prop(evil.Properties, "modelseal:pytorch:tensors"); ok {
		t.Error("the malicious checkpoint was unpickled")
	}
	if v, _ := prop(bom.Metadata.Component.Properties, PropParameters); v != "36" {
		t.Errorf("model parameters = %q", v)
	}
}

// TestScanMetadataKeys feeds the metadata keys the GGUF and ONNX scanners
// record (the scanners are written separately) and checks where they land,
// and how parameter counts add up over shards and alternatives.
func TestScanMetadataKeys(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]map[string]any
		params string
		family string
		check  func(t *testing.T, m *cdx.Component)
	}{
		{"gguf general keys", map[string]map[string]any{
			"model-Q4_K_M.gguf": {"gguf.general.architecture": "llama", "gguf.general.name": "Tiny", "gguf.general.license": "mit",
				"gguf.general.base_model.count": 1, "gguf.general.base_model.0.name": "Tiny Base", "gguf.general.base_model.0.repo_url": "https://huggingface.co/org/tiny-base",
				"gguf.general.languages": []any{"en"}, "gguf.chat_template.sha256": "ab12", "gguf.tensors": 5, "gguf.parameters": 100},
		}, "100", "llama", func(t *testing.T, m *cdx.Component) {
			if (*m.Licenses)[0].License.ID != "MIT" {
				t.Errorf("license %+v", (*m.Licenses)[0].License)
			}
			if (*m.Pedigree.Ancestors)[0].BOMRef != "base-model:org/tiny-base" {
				t.Errorf("ancestor %s", (*m.Pedigree.Ancestors)[0].BOMRef)
			}
			if v, _ := prop(m.Properties, "modelseal:model:chat-template-sha256"); v != "ab12" {
				t.Errorf("chat template %q", v)
			}
			if v, _ := prop(m.Properties, "modelseal:gguf:general.name"); v != "Tiny" {
				t.Errorf("general.name %q", v)
			}
		}},
		{"gguf alternatives take the largest", map[string]map[string]any{
			"m-Q4.gguf": {"gguf.parameters": 100, "gguf.tensors": 5},
			"m-Q8.gguf": {"gguf.parameters": 100, "gguf.tensors": 5},
		}, "100", "", nil},
		{"gguf splits add up", map[string]map[string]any{
			"m-00001-of-00002.gguf": {"gguf.parameters": 60, "gguf.tensors": 3},
			"m-00002-of-00002.gguf": {"gguf.parameters": 40, "gguf.tensors": 2},
		}, "100", "", nil},
		{"safetensors shards add up and win over gguf", map[string]map[string]any{
			"model-00001-of-00002.safetensors": {"safetensors.tensors": 2, "safetensors.parameters": uint64(70), "safetensors.dtypes": []string{"BF16"}},
			"model-00002-of-00002.safetensors": {"safetensors.tensors": 1, "safetensors.parameters": float64(30), "safetensors.dtypes": []any{"F32"}},
			"model.gguf":                       {"gguf.parameters": 5},
		}, "100", "", func(t *testing.T, m *cdx.Component) {
			if v, _ := prop(m.Properties, PropDTypes); v != "BF16,F32" {
				t.Errorf("dtypes %q", v)
			}
		}},
		{"onnx producer and opsets", map[string]map[string]any{
			"model.onnx": {"onnx.producer": "pytorch", "onnx.producer_version": "2.3.0", "onnx.opsets": map[string]any{"": 17, "com.microsoft": 1}},
		}, "", "", func(t *testing.T, m *cdx.Component) {
			if v, _ := prop(m.Properties, "modelseal:onnx:producer"); v != "pytorch 2.3.0" {
				t.Errorf("producer %q", v)
			}
			if v, _ := prop(m.Properties, "modelseal:onnx:opsets"); v != `{"":17,"com.microsoft":1}` {
				t.Errorf("opsets %q", v)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sr := &scan.Result{}
			for name, md := range c.files {
				write(t, dir, name, "x")
				sr.Files = append(sr.Files, scan.File{Path: filepath.Join(dir, name), Size: 1, Metadata: md})
			}
			set, err := modelfs.Open(dir, modelfs.Options{})
			if err != nil {
				t.Fatal(err)
			}
			dg, _ := digest.Compute(context.Background(), set, digest.Options{})
			res, err := Build(context.Background(), Input{Set: set, Digests: dg, Scan: sr}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			encodeValid(t, res.BOM)
			m := res.BOM.Metadata.Component
			if v, _ := prop(m.Properties, PropParameters); v != c.params {
				t.Errorf("parameters = %q, want %q", v, c.params)
			}
			if c.family != "" && m.ModelCard.ModelParameters.ArchitectureFamily != c.family {
				t.Errorf("family = %q", m.ModelCard.ModelParameters.ArchitectureFamily)
			}
			if c.check != nil {
				c.check(t, m)
			}
		})
	}
}

// TestSingleFileAndDataset covers a single-file model and a data file.
func TestSingleFileAndDataset(t *testing.T) {
	res, _ := build(t, torchFixture, OpenOptions{}, Input{}, Options{})
	if len(*res.BOM.Components) != 1 || (*res.BOM.Components)[0].Name != "torch_zip_state_dict.pt" {
		t.Errorf("components %+v", *res.BOM.Components)
	}
	dir := t.TempDir()
	write(t, dir, "weights.bin", "w")
	write(t, dir, "data/train.parquet", "PAR1")
	res, _ = build(t, dir, OpenOptions{}, Input{}, Options{})
	if c := component(res.BOM, "file:data/train.parquet"); c == nil || c.Type != cdx.ComponentTypeData {
		t.Errorf("data file component %+v", c)
	}
	if c := component(res.BOM, "file:weights.bin"); c == nil || c.Type != cdx.ComponentTypeFile {
		t.Errorf("weights component %+v", c)
	}
}

// TestBuildRefusesOtherDigests checks the digests must be whole-file sha256.
func TestBuildRefusesOtherDigests(t *testing.T) {
	set, _ := modelfs.Open(hfFixture, modelfs.Options{})
	for _, o := range []digest.Options{{Algorithm: digest.BLAKE3}, {ShardSize: 100}} {
		dg, _ := digest.Compute(context.Background(), set, o)
		if _, err := Build(context.Background(), Input{Set: set, Digests: dg}, Options{}); err == nil {
			t.Errorf("%+v digests accepted", o)
		}
	}
}
