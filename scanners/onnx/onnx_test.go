package onnx

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

var testPolicy = sync.OnceValue(policy.Default)

func opts() scan.Options {
	return scan.Options{Scanners: []scan.Scanner{Scanner{}}, Policy: testPolicy()}
}

func rulesOf(f scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		if !slices.Contains(out, x.Rule) {
			out = append(out, x.Rule)
		}
	}
	slices.Sort(out)
	return out
}

func maxSev(f scan.File) finding.Severity {
	s := finding.Info
	for _, x := range f.Findings {
		s = max(s, x.Severity)
	}
	return s
}

const fixtures = "../../fixtures/onnx"

// TestFixtures scans the committed sample models.
func TestFixtures(t *testing.T) {
	tests := []struct {
		path   string
		rules  []string
		maxSev finding.Severity
	}{
		{path: "real/node_test_abs.onnx"},
		{path: "real/node_test_if.onnx"},
		{path: "real/node_test_loop11.onnx"},
		{path: "real/node_test_scan9_sum.onnx"},
		{path: "real/node_test_adagrad.onnx"},
		{path: "real/pytorch-converted_test_Conv2d.onnx"},
		{path: "real/simple_test_gradient_of_add.onnx"},
		{path: "benign/ml_linear_classifier.onnx"},
		{path: "benign/local_function.onnx"},
		{path: "benign/external_data/model.onnx"},
		{path: "malicious/external_traversal.onnx", rules: []string{RuleExternalPath}, maxSev: finding.High},
		{path: "malicious/external_subdir_traversal.onnx", rules: []string{RuleExternalPath}, maxSev: finding.High},
		{path: "malicious/external_absolute.onnx", rules: []string{RuleExternalPath}, maxSev: finding.High},
		{path: "malicious/external_out_of_bounds/model.onnx", rules: []string{RuleExternalBounds}, maxSev: finding.Medium},
		{path: "malicious/python_op.onnx", rules: []string{RuleCustomDomain, RulePythonOp}, maxSev: finding.Critical},
		{path: "malicious/custom_domain.onnx", rules: []string{RuleCustomDomain}, maxSev: finding.Medium},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p := filepath.Join(fixtures, filepath.FromSlash(tt.path))
			f := scan.ScanFile(context.Background(), p, p, opts())
			if len(f.Errors) > 0 || len(f.Unscanned) > 0 || !slices.Equal(f.Formats, []string{"onnx"}) {
				t.Fatalf("errors %v unscanned %v formats %v", f.Errors, f.Unscanned, f.Formats)
			}
			if got := rulesOf(f); !slices.Equal(got, tt.rules) {
				t.Errorf("rules %v, want %v: %v", got, tt.rules, f.Findings)
			}
			if s := maxSev(f); s != tt.maxSev {
				t.Errorf("max severity %v, want %v", s, tt.maxSev)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	p := filepath.Join(fixtures, "benign", "ml_linear_classifier.onnx")
	f := scan.ScanFile(context.Background(), p, p, opts())
	m := f.Metadata
	opsets, _ := m["onnx.opsets"].(map[string]int64)
	if m["onnx.producer"] != "modelseal-fixtures" || m["onnx.ir_version"] != int64(8) ||
		opsets["ai.onnx"] != 13 || opsets["ai.onnx.ml"] != 1 ||
		!slices.Equal(m["onnx.domains"].([]string), []string{"ai.onnx.ml"}) {
		t.Fatalf("metadata %v", m)
	}
	p = filepath.Join(fixtures, "real", "pytorch-converted_test_Conv2d.onnx")
	f = scan.ScanFile(context.Background(), p, p, opts())
	if f.Metadata["onnx.producer"] != "pytorch" || f.Metadata["onnx.producer_version"] == "" {
		t.Fatalf("metadata %v", f.Metadata)
	}
}

// TestInstalledCorpus scans every model of Debian's libonnx-testdata (the
// ONNX backend test suite) when it is installed: all must parse and pass
// the default threshold.
func TestInstalledCorpus(t *testing.T) {
	root := "/usr/share/libonnx-testdata/data"
	if _, err := os.Stat(root); err != nil {
		t.Fatal("Debian's libonnx-testdata is not installed: run make deps (apt-get install libonnx-testdata)")
	}
	var n int
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".onnx" {
			return err
		}
		n++
		f := scan.ScanFile(context.Background(), p, p, opts())
		res := &scan.Result{Files: []scan.File{f}}
		if code := res.ExitCode(finding.Medium); code != scan.ExitClean || len(f.Unscanned) > 0 {
			t.Errorf("%s: exit %d findings %v errors %v unscanned %v", p, code, f.Findings, f.Errors, f.Unscanned)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("only %d models under %s", n, root)
	}
	t.Logf("%d real models scanned clean", n)
}

// proto helpers
func msg(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func vf(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}
func bf(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}
func sf(num protowire.Number, s string) []byte { return bf(num, []byte(s)) }

func extTensor(name, loc, off, length string) []byte {
	t := msg(sf(8, name), vf(2, 1), vf(14, 1), bf(13, msg(sf(1, "location"), sf(2, loc))))
	if off != "" {
		t = append(t, bf(13, msg(sf(1, "offset"), sf(2, off)))...)
	}
	if length != "" {
		t = append(t, bf(13, msg(sf(1, "length"), sf(2, length)))...)
	}
	return t
}

func model(graph ...[]byte) []byte {
	return msg(vf(1, 8), sf(2, "test"), bf(7, msg(graph...)), bf(8, msg(vf(2, 17))))
}

func node(domain, op string, attrs ...[]byte) []byte {
	n := msg(sf(1, "x"), sf(2, "y"), sf(4, op), sf(7, domain))
	for _, a := range attrs {
		n = append(n, bf(5, a)...)
	}
	return bf(1, n)
}

func TestExternalOnDisk(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "model")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 64), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "w.bin"), make([]byte, 64), 0o644)
	os.WriteFile(filepath.Join(root, "secret.bin"), make([]byte, 64), 0o644)
	symlinks := os.Symlink(filepath.Join(root, "secret.bin"), filepath.Join(dir, "link.bin")) == nil
	os.Symlink("sub", filepath.Join(dir, "inner"))
	tests := []struct {
		name   string
		tensor []byte
		rules  []string
		sev    finding.Severity
		link   bool
	}{
		{name: "in bounds", tensor: extTensor("w", "w.bin", "16", "48")},
		{name: "no offset or length", tensor: extTensor("w", "w.bin", "", "")},
		{name: "subfolder", tensor: extTensor("w", "sub/w.bin", "0", "64")},
		{name: "symlink inside the folder", tensor: extTensor("w", "inner/w.bin", "", ""), link: true},
		{name: "past the end", tensor: extTensor("w", "w.bin", "32", "64"), rules: []string{RuleExternalBounds}, sev: finding.Medium},
		{name: "offset past the end", tensor: extTensor("w", "w.bin", "65", ""), rules: []string{RuleExternalBounds}, sev: finding.Medium},
		{name: "negative length", tensor: extTensor("w", "w.bin", "0", "-1"), rules: []string{RuleExternalBounds}, sev: finding.Medium},
		{name: "missing file", tensor: extTensor("w", "nope.bin", "", ""), rules: []string{RuleExternalMissing}, sev: finding.Low},
		{name: "a folder", tensor: extTensor("w", "sub", "", ""), rules: []string{RuleExternalMissing}, sev: finding.Low},
		{name: "symlink out of the folder", tensor: extTensor("w", "link.bin", "", ""), rules: []string{RuleExternalPath}, sev: finding.High, link: true},
		{name: "dot-dot", tensor: extTensor("w", "sub/../../secret.bin", "", ""), rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "backslash dot-dot", tensor: extTensor("w", `..\secret.bin`, "", ""), rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "NUL", tensor: extTensor("w", "w.bin\x00.txt", "", ""), rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "drive letter", tensor: extTensor("w", "C:/x.bin", "", ""), rules: []string{RuleExternalPath}, sev: finding.High},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.link && !symlinks {
				t.Skip("no symlinks")
			}
			p := filepath.Join(dir, "model.onnx")
			if err := os.WriteFile(p, model(bf(5, tt.tensor)), 0o644); err != nil {
				t.Fatal(err)
			}
			f := scan.ScanFile(context.Background(), p, p, opts())
			if got := rulesOf(f); !slices.Equal(got, tt.rules) || maxSev(f) != tt.sev || len(f.Errors) > 0 {
				t.Errorf("rules %v (want %v), severity %v (want %v): %v %v", got, tt.rules, maxSev(f), tt.sev, f.Findings, f.Errors)
			}
		})
	}
}

// scanBytes scans data as a member of a container (no folder checks).
func scanBytes(t *testing.T, data []byte, depth int) scan.File {
	t.Helper()
	var f scan.File
	env := scan.NewEnv(testPolicy(), scan.Limits{}, []scan.Scanner{Scanner{}}, &f)
	loc := finding.Location{Path: "m.onnx", Offset: -1}
	if depth > 0 {
		loc = finding.Location{Path: "a.zip", Members: []string{"m.onnx"}, Offset: -1}
	}
	in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: loc, Depth: depth}
	if err := env.Dispatch(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestScanBytes(t *testing.T) {
	ifNode := func(inner []byte) []byte { // an If node whose then_branch is inner
		return node("", "If", msg(sf(1, "then_branch"), vf(20, 5), bf(6, inner)))
	}
	deep := node("", "Abs")
	for i := 0; i < MaxGraphDepth+2; i++ {
		deep = ifNode(deep)
	}
	training := msg(vf(1, 8), bf(7, node("", "Abs")), bf(20, msg(bf(2, node("evil.domain", "X")))))
	tests := []struct {
		name      string
		data      []byte
		depth     int
		rules     []string
		sev       finding.Severity
		errText   string
		unscanned int
	}{
		{name: "member external data is noted, not resolved", depth: 1, data: model(bf(5, extTensor("w", "w.bin", "0", "4"))),
			rules: []string{RuleExternalData}},
		{name: "member traversal", depth: 1, data: model(bf(5, extTensor("w", "../w.bin", "0", "4"))),
			rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "external data in a Constant attribute", depth: 1,
			data:  model(node("", "Constant", msg(sf(1, "value"), vf(20, 4), bf(5, extTensor("c", "/etc/shadow", "", ""))))),
			rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "external data in a sparse initializer", depth: 1,
			data:  model(bf(15, bf(1, extTensor("s", "../../s.bin", "", "")))),
			rules: []string{RuleExternalPath}, sev: finding.High},
		{name: "python op in a subgraph", data: model(ifNode(node("", "PythonOp"))), rules: []string{RulePythonOp}, sev: finding.Critical},
		{name: "custom domain in a training graph", data: training, rules: []string{RuleCustomDomain}, sev: finding.Medium},
		{name: "runtime contrib domain is low", data: model(node("com.microsoft", "FusedConv")), rules: []string{RuleCustomDomain}, sev: finding.Low},
		{name: "local function domain", data: msg(vf(1, 8), bf(7, node("my.fns", "F")), bf(25, msg(sf(1, "F"), sf(10, "my.fns"), bf(7, msg(sf(4, "Abs"))))))},
		{name: "function body with custom op", data: msg(vf(1, 8), bf(7, node("", "Abs")), bf(25, msg(sf(1, "F"), sf(10, "f"), bf(7, msg(sf(4, "Z"), sf(7, "x.y")))))),
			rules: []string{RuleCustomDomain}, sev: finding.Medium},
		{name: "subgraphs nested too deep", data: model(deep), errText: "subgraphs nest deeper than 64"},
		{name: "truncated", data: model(node("", "Abs"))[:12], errText: "length runs past the end"},
		{name: "bad varint", data: append(msg(vf(1, 8), sf(2, "p")), 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), errText: "invalid varint"},
		{name: "group wire type", data: append(msg(vf(1, 8), sf(2, "p")), 0x0b), errText: "unsupported wire type"},
		{name: "protobuf without graph or opsets", data: msg(vf(1, 1), sf(2, "meta graph, not onnx")), unscanned: 1},
		{name: "not protobuf", data: []byte("\x08\x07hello world"), unscanned: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := scanBytes(t, tt.data, tt.depth)
			if got := rulesOf(f); !slices.Equal(got, tt.rules) || maxSev(f) != tt.sev {
				t.Errorf("rules %v (want %v), severity %v (want %v): %v", got, tt.rules, maxSev(f), tt.sev, f.Findings)
			}
			if tt.errText == "" && len(f.Errors) > 0 || tt.errText != "" && (len(f.Errors) != 1 || !strings.Contains(f.Errors[0].Message, tt.errText)) {
				t.Errorf("errors %v, want %q", f.Errors, tt.errText)
			}
			if len(f.Unscanned) != tt.unscanned {
				t.Errorf("unscanned %v", f.Unscanned)
			}
		})
	}
}

func TestLargeRawDataNotRead(t *testing.T) {
	// An initializer with 1 MiB of raw_data: the parser skips it.
	data := model(bf(5, msg(sf(8, "w"), vf(2, 1), bf(9, make([]byte, 1<<20)))))
	r := &countingReader{data: data}
	if _, err := Parse(context.Background(), r, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if r.n > 3*window {
		t.Fatalf("read %d bytes of a %d-byte model", r.n, len(data))
	}
}

type countingReader struct {
	data []byte
	n    int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n += len(p)
	return bytes.NewReader(c.data).ReadAt(p, off)
}

func TestParseErrors(t *testing.T) {
	_, err := Parse(context.Background(), bytes.NewReader([]byte{0x08, 0x08, 0x3a, 0x05, 0x0a}), 5)
	var fe *scan.FormatError
	if !errors.As(err, &fe) || fe.Off != 4 {
		t.Fatalf("err %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"real/node_test_if.onnx", "real/node_test_loop11.onnx", "benign/local_function.onnx", "malicious/external_traversal.onnx"} {
		if b, err := os.ReadFile(filepath.Join(fixtures, p)); err == nil {
			f.Add(b)
		}
	}
	f.Add(model(bf(15, bf(1, extTensor("s", "../../s.bin", "", "")))))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse(context.Background(), bytes.NewReader(data), int64(len(data)))
		var fe *scan.FormatError
		if err != nil && !errors.As(err, &fe) && !errors.Is(err, scan.ErrNotFormat) {
			t.Fatalf("error is not a FormatError: %v", err)
		}
		_ = scanBytes(t, data, 1)
	})
}
