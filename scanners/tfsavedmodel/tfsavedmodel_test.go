package tfsavedmodel

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

var update = flag.Bool("update", false, "rewrite fixtures/tensorflow from the builders below")

// Protobuf builders: msg concatenates fields; b, s and v make one field.
func msg(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func b(num protowire.Number, val []byte) []byte {
	out := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(out, val)
}

func s(num protowire.Number, val string) []byte { return b(num, []byte(val)) }

func v(num protowire.Number, val uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), val)
}

// attr is a NodeDef attr map entry; val is an encoded AttrValue.
func attr(key string, val []byte) []byte { return b(5, msg(s(1, key), b(2, val))) }

// node is a NodeDef (name 1, op 2, input 3, attr 5).
func node(name, op string, inputs []string, attrs ...[]byte) []byte {
	parts := [][]byte{s(1, name), s(2, op)}
	for _, in := range inputs {
		parts = append(parts, s(3, in))
	}
	return msg(append(parts, attrs...)...)
}

// strConst is a Const node holding one string (AttrValue.tensor 8 →
// TensorProto dtype 1 = DT_STRING 7, string_val 8).
func strConst(name, val string) []byte {
	return node(name, "Const", nil, attr("dtype", v(6, 7)), attr("value", b(8, msg(v(1, 7), s(8, val)))))
}

// savedModel is a SavedModel with one meta graph.
func savedModel(nodes [][]byte, functions ...[]byte) []byte {
	var graph [][]byte
	for _, n := range nodes {
		graph = append(graph, b(1, n))
	}
	var lib [][]byte
	for _, f := range functions {
		lib = append(lib, b(1, f))
	}
	if len(lib) > 0 {
		graph = append(graph, b(2, msg(lib...)))
	}
	graph = append(graph, b(4, v(1, 1575))) // versions.producer
	info := msg(s(1, ""), s(4, "serve"), s(5, "2.15.0"), s(6, "v2.15.0-2-g0b15fdfcb3f"))
	return msg(v(1, 1), b(2, msg(b(1, info), b(2, msg(graph...)))))
}

// function is a FunctionDef (signature OpDef name 1, node_def 3).
func function(name string, nodes ...[]byte) []byte {
	parts := [][]byte{b(1, s(1, name))}
	for _, n := range nodes {
		parts = append(parts, b(3, n))
	}
	return msg(parts...)
}

func benignGraph() []byte {
	return savedModel([][]byte{
		node("x", "Placeholder", nil, attr("dtype", v(6, 1))),
		node("w", "Const", nil, attr("dtype", v(6, 1))),
		node("y", "MatMul", []string{"x", "w"}),
		node("saver_filename", "Placeholder", nil, attr("dtype", v(6, 7))),
		node("StatefulPartitionedCall", "StatefulPartitionedCall", []string{"saver_filename"}),
		node("save/SaveV2", "SaveV2", []string{"saver_filename", "save/tensor_names"}),
		node("save/RestoreV2", "RestoreV2", []string{"saver_filename", "save/tensor_names"}),
	}, function("__inference_serve_10", node("MatMul", "MatMul", []string{"x", "w"}), node("Identity", "Identity", []string{"MatMul:product:0"})))
}

func maliciousGraph() []byte {
	return savedModel([][]byte{
		node("x", "Placeholder", nil),
		node("cb", "PyFunc", []string{"x"}, attr("token", s(2, "pyfunc_0"))),
		node("p", "PrintV2", []string{"x"}, attr("output_stream", s(2, "file:///tmp/modelseal-harmless.log"))),
		strConst("evil_path", "/tmp/../etc/modelseal-harmless"),
		node("save/SaveV2", "SaveV2", []string{"evil_path:0", "names"}),
	}, function("__inference_call_7",
		strConst("fname", "/etc/hostname"),
		node("ReadFile", "ReadFile", []string{"fname"}),
		node("WriteFile", "WriteFile", []string{"fname", "ReadFile:contents:0"})))
}

// kerasMeta is a SavedMetadata with one SavedObject per (path, identifier,
// metadata JSON).
func kerasMeta(objs ...[3]string) []byte {
	var parts [][]byte
	for i, o := range objs {
		parts = append(parts, b(1, msg(b(1, v(1, 1)), v(2, uint64(i)), s(3, o[0]), s(4, o[1]), s(5, o[2]))))
	}
	return msg(parts...)
}

const lambdaCode = `4wEAAAAAAAAAAAAAAAIAAAADAAAA8wwAAACXAHwAZAF6BQAAUwApAk7pAgAAAKkAKQHaAXhzAQAA\nACD6CDxzdHJpbmc++gg8bGFtYmRhPnIGAAAAAwAAAHMKAAAAgACoUbARqVWAAPMAAAAA\n`

func benignMeta() []byte {
	return kerasMeta(
		[3]string{"root", "_tf_keras_sequential", `{"name": "sequential", "trainable": true, "class_name": "Sequential", "config": {"name": "sequential", "layers": [{"class_name": "Dense", "config": {"units": 2}}]}, "keras_version": "2.15.0", "backend": "tensorflow"}`},
		[3]string{"root.layer_with_weights-0", "_tf_keras_layer", `{"name": "dense", "trainable": true, "class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "relu", "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}}}}`},
	)
}

func maliciousMeta() []byte {
	return kerasMeta(
		[3]string{"root", "_tf_keras_sequential", `{"name": "sequential", "class_name": "Sequential", "config": {"name": "sequential", "layers": [{"class_name": "Lambda", "config": {}}]}}`},
		[3]string{"root.layer-0", "_tf_keras_layer", `{"name": "lambda", "class_name": "Lambda", "config": {"name": "lambda", "function": ["` + lambdaCode + `", null, null], "function_type": "lambda", "module": "__main__"}}`},
	)
}

func run(t testing.TB, data []byte) scan.File {
	t.Helper()
	return scan.ScanBytes(context.Background(), "t", data, scan.Options{Policy: policy.Default(), Scanners: []scan.Scanner{Scanner{}, MetadataScanner{}}})
}

func rules(f scan.File, min finding.Severity) []string {
	var out []string
	for _, x := range f.Findings {
		if x.Severity >= min {
			out = append(out, x.Rule)
		}
	}
	return out
}

func TestScan(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		format  string
		blocked []string // rules at medium or above, in any order, with repeats
		message string
	}{
		{name: "benign graph", data: benignGraph(), format: "tf-savedmodel"},
		{name: "malicious graph", data: maliciousGraph(), format: "tf-savedmodel",
			blocked: []string{RulePythonOp, RuleFileOp, RuleSaverOp, RuleFileOp, RuleFileOp}, message: "file:///tmp/modelseal-harmless.log"},
		{name: "eager py func in a function", data: savedModel(nil, function("f", node("e", "EagerPyFunc", nil))), format: "tf-savedmodel", blocked: []string{RulePythonOp}},
		{name: "namespaced custom op", data: savedModel([][]byte{node("g", "Addons>GeluImpl", nil)}), format: "tf-savedmodel", blocked: []string{RuleCustomOp}},
		{name: "saved model without schema version", data: savedModel([][]byte{node("r", "ReadFile", nil)})[2:], format: "tf-savedmodel", blocked: []string{RuleFileOp}},
		{name: "benign keras metadata", data: benignMeta(), format: "keras-metadata-pb"},
		{name: "lambda in keras metadata", data: maliciousMeta(), format: "keras-metadata-pb", blocked: []string{"keras/lambda", "keras/lambda"}, message: "root.layer-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, tt.data)
			if len(f.Errors) > 0 || !slices.Contains(f.Formats, tt.format) {
				t.Fatalf("formats %v errors %v unscanned %v", f.Formats, f.Errors, f.Unscanned)
			}
			got := rules(f, finding.Medium)
			slices.Sort(got)
			want := slices.Clone(tt.blocked)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("rules %v, want %v; findings %v", got, want, f.Findings)
			}
			if tt.message != "" && !slices.ContainsFunc(f.Findings, func(x finding.Finding) bool { return strings.Contains(x.Message, tt.message) }) {
				t.Errorf("no message names %q: %v", tt.message, f.Findings)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	f := run(t, maliciousGraph())
	if f.Metadata["tf.version"] != "2.15.0" || !slices.Equal(f.Metadata["tf.tags"].([]string), []string{"serve"}) {
		t.Errorf("metadata %v", f.Metadata)
	}
	ops := f.Metadata["tf.ops"].([]string)
	for _, op := range []string{"PyFunc", "ReadFile", "WriteFile", "Const", "SaveV2"} {
		if !slices.Contains(ops, op) {
			t.Errorf("tf.ops %v lacks %s", ops, op)
		}
	}
	f = run(t, benignMeta())
	if f.Metadata["keras.class_name"] != "Sequential" || f.Metadata["keras.layers"] != 1 {
		t.Errorf("keras metadata %v", f.Metadata)
	}
}

// TestNotFormat: other protobufs (ONNX ModelProto, a SentencePiece model,
// truncated input) are left to other scanners.
func TestNotFormat(t *testing.T) {
	onnx := msg(v(1, 8), s(2, "pytorch"), s(3, "2.1.0"), b(7, msg(b(1, node("n", "Relu", nil)))))
	onnxEmptyProducer := msg(v(1, 8), s(2, ""), b(7, nil))
	sentencepiece := msg(b(1, msg(s(1, "<unk>"), protowire.AppendFixed32(protowire.AppendTag(nil, 2, protowire.Fixed32Type), 0))))
	meta := kerasMeta([3]string{"root", "something_else", `{}`})
	for name, data := range map[string][]byte{"onnx": onnx, "onnx empty producer": onnxEmptyProducer, "sentencepiece": sentencepiece,
		"not keras identifiers": meta, "truncated": benignGraph()[:40], "json": []byte(`{"a": 1}`)} {
		f := run(t, data)
		if len(f.Formats) > 0 || len(f.Findings) > 0 || len(f.Errors) > 0 {
			t.Errorf("%s: formats %v findings %v errors %v", name, f.Formats, f.Findings, f.Errors)
		}
	}
}

// TestFixtures checks the committed fixtures against the builders (run
// with -update to rewrite them) and scans them.
func TestFixtures(t *testing.T) {
	dir := filepath.Join("..", "..", "fixtures", "tensorflow")
	files := map[string][]byte{
		"benign/saved_model.pb":                 benignGraph(),
		"benign/keras_metadata.pb":              benignMeta(),
		"malicious_ops_harmless/saved_model.pb": maliciousGraph(),
		"lambda_harmless/keras_metadata.pb":     maliciousMeta(),
	}
	type label struct {
		Path    string   `json:"path"`
		Verdict string   `json:"verdict"`
		Rules   []string `json:"rules"`
		Note    string   `json:"note"`
	}
	labels := []label{
		{"tensorflow/benign/saved_model.pb", "benign", nil, "serving graph with a saver (SaveV2/RestoreV2 fed by a placeholder) and a library function"},
		{"tensorflow/benign/keras_metadata.pb", "benign", nil, "tf.keras SavedModel metadata of Sequential(Dense)"},
		{"tensorflow/malicious_ops_harmless/saved_model.pb", "malicious", []string{RulePythonOp, RuleFileOp, RuleSaverOp}, "PyFunc, PrintV2 to a file, SaveV2 to a constant path with '..', ReadFile/WriteFile in a function"},
		{"tensorflow/lambda_harmless/keras_metadata.pb", "malicious", []string{"keras/lambda"}, "Lambda layer with marshalled bytecode of lambda x: x * 2"},
	}
	if *update {
		for p, data := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		raw, _ := json.MarshalIndent(labels, "", " ")
		if err := os.WriteFile(filepath.Join(dir, "labels.json"), append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range labels {
		rel := strings.TrimPrefix(l.Path, "tensorflow/")
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, files[rel]) {
			t.Errorf("%s differs from its builder; run go test -run TestFixtures -update", l.Path)
		}
		f := run(t, data)
		code := (&scan.Result{Files: []scan.File{f}}).ExitCode(finding.Medium)
		switch l.Verdict {
		case "benign":
			if code != scan.ExitClean || len(f.Formats) == 0 {
				t.Errorf("%s: exit %d formats %v findings %v", l.Path, code, f.Formats, f.Findings)
			}
		case "malicious":
			if code != scan.ExitFindings {
				t.Errorf("%s not blocked: %v", l.Path, f.Findings)
			}
			for _, r := range l.Rules {
				if !slices.Contains(rules(f, finding.Medium), r) {
					t.Errorf("%s: rule %s missing: %v", l.Path, r, f.Findings)
				}
			}
		}
	}
}

func FuzzScan(f *testing.F) {
	for _, d := range [][]byte{benignGraph(), maliciousGraph(), benignMeta(), maliciousMeta()} {
		f.Add(d)
	}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		var file scan.File
		env := scan.NewEnv(pol, scan.Limits{}, []scan.Scanner{Scanner{}, MetadataScanner{}}, &file)
		in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "f", Offset: -1}}
		if err := env.Dispatch(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		for _, x := range file.Findings {
			if x.Location.Offset > int64(len(data)) {
				t.Fatalf("offset past the end: %+v", x)
			}
		}
	})
}
