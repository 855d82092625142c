package keras

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/zipscan"
)

// Harmless marshalled code objects (CPython 3.11): lambda x: x * 2, and a
// function whose bytecode names os.system. Nothing here unmarshals them.
const (
	codeDouble = "4wEAAAAAAAAAAAAAAAIAAAADAAAA8wwAAACXAHwAZAF6BQAAUwApAk7pAgAAAKkAKQHaAXhzAQAA\nACD6CDxzdHJpbmc++gg8bGFtYmRhPnIGAAAAAwAAAHMKAAAAgACoUbARqVWAAPMAAAAA\n"
	codeOS     = "4wEAAAAAAAAAAAAAAAMAAAADAAAA8zQAAACXAGQBZABsAH0BfAGgAQAAAAAAAAAAAAAAAAAAAAAA\nAAAAZAKmAQAAqwEAAAAAAAAAAFMAKQNO6QAAAAD6F2VjaG8gbW9kZWxzZWFsLWhhcm1sZXNzKQLa\nAm9z2gZzeXN0ZW0pAtoBeHIEAAAAcwIAAAAgIPoIPHN0cmluZz7aAWZyCAAAAAQAAABzHgAAAIAA\n2AQNgEmASYBJ2AsNjzmKOdAVLtELL9QLL9AEL/MAAAAA\n"
)

func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type obj = map[string]any

// seq wraps layers in a Keras 3 Sequential config.
func seq(layers ...any) string {
	all := append([]any{obj{"module": "keras.layers", "class_name": "InputLayer", "config": obj{"batch_shape": []any{nil, 4}, "name": "input_layer"}, "registered_name": nil}}, layers...)
	return js(obj{"module": "keras", "class_name": "Sequential", "registered_name": nil,
		"config":         obj{"name": "sequential", "dtype": obj{"module": "keras", "class_name": "DTypePolicy", "config": obj{"name": "float32"}, "registered_name": nil}, "layers": all},
		"compile_config": obj{"optimizer": obj{"module": "keras.optimizers", "class_name": "Adam", "config": obj{"learning_rate": 0.001}, "registered_name": nil}, "loss": "mse"}})
}

func dense(extra obj) obj {
	c := obj{"name": "dense", "units": 2, "activation": "relu",
		"kernel_initializer": obj{"module": "keras.initializers", "class_name": "GlorotUniform", "config": obj{"seed": nil}, "registered_name": nil}}
	for k, v := range extra {
		c[k] = v
	}
	return obj{"module": "keras.layers", "class_name": "Dense", "config": c, "registered_name": nil}
}

func run(t testing.TB, data []byte, scanners ...scan.Scanner) scan.File {
	t.Helper()
	if len(scanners) == 0 {
		scanners = []scan.Scanner{Scanner{}, H5Scanner{}}
	}
	return scan.ScanBytes(context.Background(), "t", data, scan.Options{Policy: policy.Default(), Scanners: scanners})
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		rules   []string // every rule expected (in any order); nil: no findings
		sev     finding.Severity
		global  string // a Global expected on some finding
		message string // a substring expected in some message
	}{
		{name: "benign sequential", doc: seq(dense(nil))},
		{name: "keras 2 h5 config", doc: js(obj{"class_name": "Sequential", "config": obj{"name": "s", "layers": []any{obj{"class_name": "Dense", "config": obj{"units": 1, "kernel_initializer": obj{"class_name": "GlorotUniform", "config": obj{}}}}}}, "keras_version": "2.15.0", "backend": "tensorflow"})},
		{name: "python json dialect NaN", doc: `{"class_name": "Dense", "config": {"max_value": NaN, "min": -Infinity, "x": Infinity}}`},
		{name: "keras 3 lambda", doc: seq(obj{"module": "keras.layers", "class_name": "Lambda", "registered_name": nil,
			"config": obj{"name": "lambda", "function": obj{"class_name": "__lambda__", "config": obj{"value": []any{codeDouble, nil, nil}}}}}),
			rules: []string{RuleLambda}, sev: finding.Critical, message: "marshalled Python bytecode (108 bytes)"},
		{name: "keras 2 lambda naming os.system", doc: js(obj{"class_name": "Sequential", "config": obj{"layers": []any{
			obj{"class_name": "Lambda", "config": obj{"name": "l", "function": []any{codeOS, nil, nil}, "function_type": "lambda", "module": "__main__"}}}}}),
			rules: []string{RuleLambda}, sev: finding.Critical, message: "it names os, system"},
		{name: "lambda by module and name", doc: js(obj{"class_name": "Lambda", "config": obj{"name": "l", "function": "system", "function_type": "function", "module": "os"}}),
			rules: []string{RuleLambda}, sev: finding.Critical, global: "os.system"},
		{name: "keras 3 lambda named function", doc: seq(obj{"module": "keras.layers", "class_name": "Lambda", "registered_name": nil,
			"config": obj{"name": "l", "function": obj{"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"}}}),
			rules: []string{RuleLambda}, sev: finding.Critical, global: "builtins.eval"},
		{name: "bare __lambda__ as an activation", doc: seq(dense(obj{"activation": obj{"class_name": "__lambda__", "config": obj{"value": []any{codeDouble, nil, nil}}}})),
			rules: []string{RuleLambda}, sev: finding.Critical},
		{name: "tfoplambda", doc: js(obj{"class_name": "TFOpLambda", "config": obj{"name": "tf.math.add", "function": "math.add"}}),
			rules: []string{RuleTFOpLambda}, sev: finding.High},
		{name: "tfoplambda py_function", doc: js(obj{"class_name": "TFOpLambda", "config": obj{"name": "x", "function": "py_function"}}),
			rules: []string{RuleTFOpLambda}, sev: finding.Critical},
		{name: "CVE-2025-1550 os.system", doc: seq(obj{"module": "os", "class_name": "system", "config": obj{"command": "echo x"}, "registered_name": "system"}),
			rules: []string{RuleUnsafeModule}, sev: finding.Critical, global: "os.system"},
		{name: "builtins function exec", doc: seq(dense(obj{"activation": obj{"module": "builtins", "class_name": "function", "config": "exec", "registered_name": nil}})),
			rules: []string{RuleUnsafeModule}, sev: finding.Critical, global: "builtins.exec"},
		{name: "unknown third-party module", doc: seq(obj{"module": "my_layers", "class_name": "Fancy", "config": obj{}, "registered_name": "Custom>Fancy"}),
			rules: []string{RuleUnsafeModule}, sev: finding.Medium, global: "my_layers.Fancy"},
		{name: "subprocess via registered_name", doc: seq(obj{"module": "subprocess", "class_name": "Whatever", "config": obj{}, "registered_name": "Popen"}),
			rules: []string{RuleUnsafeModule}, sev: finding.Critical},
		{name: "keras get_file (CVE-2025-8747)", doc: seq(dense(obj{"kernel_initializer": obj{"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "get_file"}})),
			rules: []string{RuleKerasFunc}, sev: finding.High, global: "keras.utils.get_file"},
		{name: "enable_unsafe_deserialization (CVE-2025-9906)", doc: seq(obj{"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization", "registered_name": nil}),
			rules: []string{RuleKerasFunc}, sev: finding.Critical},
		{name: "custom registered object", doc: seq(obj{"module": "keras.layers", "class_name": "MyLayer", "config": obj{}, "registered_name": "my_pkg>MyLayer"}),
			rules: []string{RuleCustomObject}, sev: finding.Medium},
		{name: "keras_hub registered names pass", doc: seq(obj{"module": "keras_hub.src.models.gemma.gemma_backbone", "class_name": "GemmaBackbone", "config": obj{}, "registered_name": "keras_hub>GemmaBackbone"})},
		{name: "tensorflow typespec passes", doc: seq(obj{"class_name": "__typespec__", "spec_name": "TensorSpec", "module": "tensorflow.python.framework.tensor", "config": []any{[]any{nil, 4}, "float32", nil}, "registered_name": nil})},
		{name: "fn naming a module", doc: seq(obj{"module": "keras.losses", "class_name": "LossFunctionWrapper", "config": obj{"fn": "os.system"}, "registered_name": nil}),
			rules: []string{RuleFunctionRef}, sev: finding.Critical, global: "os.system"},
		{name: "vocabulary file path", doc: seq(obj{"module": "keras.layers", "class_name": "StringLookup", "config": obj{"vocabulary": "/etc/passwd"}, "registered_name": nil}),
			rules: []string{RuleFileRef}, sev: finding.High},
		{name: "duplicate key hides a lambda from first-wins parsers", doc: `{"class_name": "Dense", "class_name": "Lambda", "config": {"function": ["` + strings.ReplaceAll(codeDouble, "\n", `\n`) + `", null, null], "function_type": "lambda"}}`,
			rules: []string{RuleLambda, RuleDuplicateKey}, sev: finding.Critical},
		{name: "config behind padding past the head", doc: `{"padding": "` + strings.Repeat("x", 4000) + `", "module": "os", "class_name": "system", "config": {}}`,
			rules: []string{RuleUnsafeModule}, sev: finding.Critical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, []byte(tt.doc))
			if len(f.Errors) > 0 || !slices.Contains(f.Formats, "keras") {
				t.Fatalf("formats %v errors %v unscanned %v", f.Formats, f.Errors, f.Unscanned)
			}
			got := f.Rules()
			if tt.rules == nil {
				if len(got) > 0 {
					t.Fatalf("want no findings, got %v", f.Findings)
				}
				return
			}
			for _, r := range tt.rules {
				if !slices.Contains(got, r) {
					t.Errorf("rule %s missing; findings %v", r, f.Findings)
				}
			}
			if s := f.MaxSeverity(); s != tt.sev {
				t.Errorf("severity %v, want %v; findings %v", s, tt.sev, f.Findings)
			}
			if tt.global != "" && !slices.ContainsFunc(f.Findings, func(x finding.Finding) bool { return x.Global == tt.global }) {
				t.Errorf("global %s not named; findings %v", tt.global, f.Findings)
			}
			if tt.message != "" && !slices.ContainsFunc(f.Findings, func(x finding.Finding) bool { return strings.Contains(x.Message, tt.message) }) {
				t.Errorf("no message contains %q; findings %v", tt.message, f.Findings)
			}
		})
	}
}

func TestNotKeras(t *testing.T) {
	for _, doc := range []string{
		`{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096}`,
		`{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": []}`,
		`{"weight_map": {"a": "model-00001.safetensors"}}`,
		`[{"class_name": "Lambda", "config": {}}]`,
		`{"class_name": "x"}`,
		`{"broken": `,
	} {
		f := run(t, []byte(doc), Scanner{})
		if len(f.Formats) > 0 || len(f.Findings) > 0 || len(f.Errors) > 0 {
			t.Errorf("%.40s: claimed as %v, findings %v, errors %v", doc, f.Formats, f.Findings, f.Errors)
		}
	}
	// Keras-looking JSON that Python would refuse is an error, not a pass.
	f := run(t, []byte(`{"class_name": "Lambda", "config": {"function": 'x'}}`), Scanner{})
	if len(f.Errors) == 0 {
		t.Errorf("malformed Keras config passed: %+v", f)
	}
}

func TestMetadataAndEncodings(t *testing.T) {
	f := run(t, []byte(`{"keras_version": "3.6.0", "date_saved": "2025-01-01@00:00:00"}`))
	if f.Metadata["keras.version"] != "3.6.0" || len(f.Findings) > 0 {
		t.Errorf("metadata.json: meta %v findings %v", f.Metadata, f.Findings)
	}
	f = run(t, []byte(seq(dense(nil))))
	if f.Metadata["keras.class_name"] != "Sequential" || f.Metadata["keras.layers"] != 2 {
		t.Errorf("config metadata %v", f.Metadata)
	}
	// UTF-16 with a BOM: Python's json.loads(bytes) reads it, so must we.
	doc := `{"class_name": "Lambda", "config": {"function": "system", "module": "os"}}`
	u := []byte{0xFF, 0xFE}
	for _, r := range doc {
		u = append(u, byte(r), 0)
	}
	f = run(t, u)
	if !slices.Contains(f.Rules(), RuleLambda) || !slices.Contains(f.Rules(), RuleEncoding) {
		t.Errorf("UTF-16 config: findings %v errors %v", f.Findings, f.Errors)
	}
}

func TestMarshalNames(t *testing.T) {
	got := MarshalNames(mustB64(t, codeOS), 40)
	for _, want := range []string{"os", "system"} {
		if !slices.Contains(got, want) {
			t.Errorf("names %v lack %s", got, want)
		}
	}
	if got := MarshalNames([]byte{'z', 200, 'a'}, 10); len(got) != 0 {
		t.Errorf("truncated record: %v", got)
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	cfg := &checker{pol: policy.Default(), cfg: &Config{}, done: map[int64]bool{}, limit: 10}
	h := cfg.bytecodeHit(0, "x", &node{kind: kString, str: s})
	if h.Evidence["bytecode_bytes"] == "" {
		t.Fatalf("not decoded: %+v", h)
	}
	b, err := decodeB64(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFixtures scans the committed fixtures (made by make_fixtures.py with
// h5py) through zipscan and this package's scanners.
func TestFixtures(t *testing.T) {
	raw, err := os.ReadFile("../../fixtures/keras/labels.json")
	if err != nil {
		t.Fatal(err)
	}
	var labels []struct {
		Path, Verdict string
		Rules         []string
	}
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatal(err)
	}
	for _, l := range labels {
		t.Run(l.Path, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("../../fixtures", l.Path))
			if err != nil {
				t.Fatal(err)
			}
			f := run(t, data, zipscan.New(), Scanner{}, H5Scanner{})
			if len(f.Errors) > 0 {
				t.Fatalf("errors %v", f.Errors)
			}
			if !slices.Contains(f.Formats, "keras") {
				t.Errorf("keras config not reached: formats %v unscanned %v", f.Formats, f.Unscanned)
			}
			switch l.Verdict {
			case "benign":
				if f.MaxSeverity() >= finding.Medium {
					t.Errorf("benign fixture flagged: %v", f.Findings)
				}
			case "malicious":
				if f.MaxSeverity() < finding.High {
					t.Errorf("malicious fixture not blocked: %v", f.Findings)
				}
				for _, r := range l.Rules {
					if !slices.Contains(f.Rules(), r) {
						t.Errorf("rule %s missing: %v", r, f.Findings)
					}
				}
			}
			if strings.HasSuffix(l.Path, ".h5") && f.Metadata["keras.version"] != "2.15.0" {
				t.Errorf("h5 metadata %v", f.Metadata)
			}
		})
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte(seq(dense(nil))))
	f.Add([]byte(`{"class_name": "Lambda", "config": {"function": ["` + strings.ReplaceAll(codeOS, "\n", `\n`) + `", null, null]}}`))
	f.Add([]byte(`{"keras_version": "3.6.0"}`))
	f.Add([]byte("\xff\xfe{\x00}\x00"))
	for _, p := range []string{"benign_dense.h5", "benign_dense_fixed.h5", "lambda_os_harmless.h5"} {
		if b, err := os.ReadFile(filepath.Join("../../fixtures/keras", p)); err == nil {
			f.Add(b)
		}
	}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		var file scan.File
		env := scan.NewEnv(pol, scan.Limits{}, []scan.Scanner{Scanner{}, H5Scanner{}}, &file)
		in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "f", Offset: -1}}
		if err := env.Dispatch(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		for _, x := range file.Findings {
			if !strings.HasPrefix(x.Rule, "keras/") {
				t.Fatalf("bad rule %+v", x)
			}
		}
	})
}

// FuzzReadRootAttrs mutates real HDF5 files: the reader must stay inside
// the file and never panic.
func FuzzReadRootAttrs(f *testing.F) {
	for _, p := range []string{"benign_dense.h5", "benign_dense_fixed.h5", "lambda_os_harmless.h5"} {
		if b, err := os.ReadFile(filepath.Join("../../fixtures/keras", p)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		attrs, err := ReadRootAttrs(bytes.NewReader(data), int64(len(data)))
		if err == nil {
			for _, a := range attrs.Attrs {
				if a.Off > int64(len(data)) {
					t.Fatalf("offset %d past the end", a.Off)
				}
			}
		}
	})
}
