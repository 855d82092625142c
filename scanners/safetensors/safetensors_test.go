package safetensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// file builds a safetensors file from a header text and the buffer.
func file(header string, buf []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, buf...)
}

// run scans data as the file path (a name only; nothing is read from disk
// unless the scanner resolves shards next to it).
func run(t testing.TB, path string, data []byte) scan.File {
	t.Helper()
	return scan.ScanBytes(context.Background(), path, data, scan.Options{Policy: testPolicy(), Scanners: []scan.Scanner{Scanner{}, IndexScanner{}, pickle.Scanner{}}})
}

const twoTensors = `{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}`

func TestScan(t *testing.T) {
	evil := []byte("cos\nsystem\n(S'echo modelseal-harmless'\ntR.")
	tests := []struct {
		name      string
		data      []byte
		rules     []string // exactly these, sorted
		maxSev    finding.Severity
		errors    int
		unscanned int
		errText   string
	}{
		{name: "valid", data: file(twoTensors, make([]byte, 22))},
		{name: "valid with space padding", data: file(twoTensors+"        ", make([]byte, 22))},
		{name: "empty header", data: file(`{}`, nil)},
		{name: "metadata only", data: file(`{"__metadata__":{"a":"b"}}`, nil)},
		{name: "zero-sized tensor", data: file(`{"e":{"dtype":"F16","shape":[0,4],"data_offsets":[0,0]},"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}`, []byte{7})},
		{name: "sub-byte dtype", data: file(`{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}`, []byte{1, 2})},
		{name: "duplicate tensor key", maxSev: finding.Medium, rules: []string{RuleDuplicateKey},
			data: file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1})},
		{name: "duplicate field", maxSev: finding.Medium, rules: []string{RuleDuplicateKey},
			data: file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}}`, []byte{1})},
		{name: "duplicate metadata key", maxSev: finding.Medium, rules: []string{RuleDuplicateKey},
			data: file(`{"__metadata__":{"a":"1","a":"2"}}`, nil)},
		{name: "gap between tensors", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, make([]byte, 3))},
		{name: "overlapping tensors", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, make([]byte, 3))},
		{name: "size disagrees with shape", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4))},
		{name: "unknown dtype", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, make([]byte, 16))},
		{name: "shape product overflows", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}}`, nil)},
		{name: "bits overflow", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}}`, nil)},
		{name: "odd sub-byte count", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, make([]byte, 2))},
		{name: "negative offset", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}`, nil)},
		{name: "float shape", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}`, []byte{1})},
		{name: "missing dtype", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"shape":[1],"data_offsets":[0,1]}}`, []byte{1})},
		{name: "metadata value not a string", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"__metadata__":{"n":1,"o":{"x":[1,2]}}}`, nil)},
		{name: "unknown tensor field", maxSev: finding.Low, rules: []string{RuleUnknownField},
			data: file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"note":{"k":[1]}}}`, []byte{1})},
		{name: "buffer past end of file", maxSev: finding.Medium, rules: []string{RuleInvalidHeader},
			data: file(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`, make([]byte, 4))},
		{name: "trailing zeros", maxSev: finding.Medium, rules: []string{RuleTrailingData}, unscanned: 1,
			data: file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 9))},
		{name: "trailing pickle payload is scanned", maxSev: finding.Critical,
			data: file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, append([]byte{0}, evil...))},
		{name: "invalid UTF-8", errors: 1, errText: "not valid UTF-8 at byte 16",
			data: file("{\"a\":{\"d\xff\":1}}", nil)},
		{name: "invalid JSON", errors: 1, errText: "not valid JSON",
			data: file(`{"a":{"dtype":"U8",}}`, nil)},
		{name: "content after object", errors: 1, errText: "content after the JSON object",
			data: file(`{} {}`, nil)},
		{name: "truncated JSON", errors: 1, errText: "ends early",
			data: file(`{"a":{"dtype":"U8"`, nil)},
		{name: "header not an object start", unscanned: 1, data: file(`["a"]`, nil)},
		{name: "header length past end", unscanned: 1, data: binary.LittleEndian.AppendUint64(nil, 100)},
		{name: "header over the limit", unscanned: 1, data: append(binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1), '{', '}')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, "m.safetensors", tt.data)
			got := slices.Compact(slices.Sorted(slices.Values(f.Rules())))
			if tt.rules != nil || len(got) > 0 {
				want := slices.Sorted(slices.Values(tt.rules))
				if !slices.Equal(got, want) && tt.maxSev != finding.Critical {
					t.Errorf("rules = %v, want %v; findings %v", got, want, f.Findings)
				}
			}
			if s := f.MaxSeverity(); s != tt.maxSev {
				t.Errorf("max severity = %v, want %v; findings %v", s, tt.maxSev, f.Findings)
			}
			if len(f.Errors) != tt.errors {
				t.Errorf("errors = %v, want %d", f.Errors, tt.errors)
			}
			if tt.errText != "" && len(f.Errors) > 0 && !strings.Contains(f.Errors[0].Message, tt.errText) {
				t.Errorf("error %q does not contain %q", f.Errors[0].Message, tt.errText)
			}
			if len(f.Unscanned) != tt.unscanned {
				t.Errorf("unscanned = %v, want %d", f.Unscanned, tt.unscanned)
			}
		})
	}
}

func TestTrailingPickleLocation(t *testing.T) {
	evil := []byte("cos\nsystem\n(S'x'\ntR.")
	f := run(t, "m.safetensors", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, append([]byte{0}, evil...)))
	var found bool
	for _, x := range f.Findings {
		if x.Global == "os.system" && slices.Equal(x.Location.Members, []string{TrailingMember}) {
			found = true
		}
	}
	if !found || !slices.Contains(f.Rules(), RuleTrailingData) {
		t.Fatalf("payload after the buffer not found: %v", f.Findings)
	}
}

func TestMetadata(t *testing.T) {
	f := run(t, "m.safetensors", file(twoTensors, make([]byte, 22)))
	if len(f.Findings) != 0 || len(f.Errors) != 0 {
		t.Fatalf("findings %v errors %v", f.Findings, f.Errors)
	}
	m := f.Metadata
	if m["safetensors.tensors"] != 2 || m["safetensors.parameters"] != uint64(7) ||
		!slices.Equal(m["safetensors.dtypes"].([]string), []string{"BF16", "F32"}) ||
		m["safetensors.metadata"].(map[string]string)["format"] != "pt" {
		t.Fatalf("metadata %v", m)
	}
	if !slices.Equal(f.Formats, []string{"safetensors"}) {
		t.Fatalf("formats %v", f.Formats)
	}
}

func TestReadHeaderErrors(t *testing.T) {
	tests := []struct {
		data []byte
		want string
	}{
		{[]byte{1, 2}, "shorter than the 8-byte header length"},
		{binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds the limit"},
		{binary.LittleEndian.AppendUint64(nil, 5), "runs past the end"},
		{file("{", nil), "too small"},
		{file(" {}", nil), "does not start with '{' ' ' at byte 8"},
	}
	for _, tt := range tests {
		_, err := ReadHeader(bytes.NewReader(tt.data), int64(len(tt.data)))
		var fe *scan.FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadHeader(%q) = %v, want a FormatError with %q", tt.data, err, tt.want)
		}
	}
}

// TestHeaderOnly checks that a large file's buffer is never read.
func TestHeaderOnly(t *testing.T) {
	header := `{"big":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}}`
	r := &countingReader{data: file(header, nil), size: 8 + int64(len(header)) + 4294967296}
	var f scan.File
	env := scan.NewEnv(testPolicy(), scan.Limits{}, []scan.Scanner{Scanner{}}, &f)
	in := scan.Input{R: r, Size: r.size, Loc: finding.Location{Path: "big.safetensors", Offset: -1}}
	if err := env.Dispatch(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if len(f.Findings) != 0 || len(f.Errors) != 0 || r.max > int64(8+len(header)) {
		t.Fatalf("findings %v errors %v, read up to byte %d", f.Findings, f.Errors, r.max)
	}
	if f.Metadata["safetensors.parameters"] != uint64(1<<30) {
		t.Fatalf("metadata %v", f.Metadata)
	}
}

// countingReader serves data followed by zeros up to size, and records how
// far any read after the first (the registry's sniffing read) reaches.
type countingReader struct {
	data  []byte
	size  int64
	max   int64
	reads int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	if c.reads > 0 {
		c.max = max(c.max, off+int64(len(p)))
	}
	c.reads++
	clear(p)
	if off < int64(len(c.data)) {
		copy(p, c.data[off:])
	}
	return len(p), nil
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func shard(names ...string) []byte {
	var b strings.Builder
	b.WriteString("{")
	for i, n := range names {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"` + n + `":{"dtype":"U8","shape":[1],"data_offsets":[` + string(rune('0'+i)) + `,` + string(rune('1'+i)) + `]}`)
	}
	b.WriteString("}")
	return file(b.String(), make([]byte, len(names)))
}

func TestIndex(t *testing.T) {
	tests := []struct {
		name   string
		index  string
		files  map[string][]byte
		link   [2]string // symlink name -> target (relative to a sibling folder)
		rules  []string
		maxSev finding.Severity
	}{
		{name: "two shards",
			index: `{"metadata":{"total_size":3},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}`,
			files: map[string][]byte{"model-00001-of-00002.safetensors": shard("a", "b"), "model-00002-of-00002.safetensors": shard("c")}},
		{name: "shard in a subfolder",
			index: `{"weight_map":{"a":"sub/s.safetensors"}}`, files: map[string][]byte{"sub/s.safetensors": shard("a")}},
		{name: "missing shard", maxSev: finding.Low, rules: []string{RuleIndexMissingShard},
			index: `{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`, files: map[string][]byte{"s1.safetensors": shard("a")}},
		{name: "path escape", maxSev: finding.High, rules: []string{RuleIndexUnsafePath},
			index: `{"weight_map":{"a":"../../etc/passwd"}}`},
		{name: "subdir dot-dot escape", maxSev: finding.High, rules: []string{RuleIndexUnsafePath},
			index: `{"weight_map":{"a":"sub/../../x.safetensors"}}`},
		{name: "absolute path", maxSev: finding.High, rules: []string{RuleIndexUnsafePath},
			index: `{"weight_map":{"a":"/etc/passwd"}}`},
		{name: "windows path", maxSev: finding.High, rules: []string{RuleIndexUnsafePath},
			index: `{"weight_map":{"a":"C:\\x.safetensors"}}`},
		{name: "symlink out of the folder", maxSev: finding.High, rules: []string{RuleIndexUnsafePath},
			index: `{"weight_map":{"a":"s.safetensors"}}`, link: [2]string{"s.safetensors", "../outside/s.safetensors"}},
		{name: "tensor listed twice", maxSev: finding.Medium, rules: []string{RuleIndexDuplicate},
			index: `{"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}}`,
			files: map[string][]byte{"s1.safetensors": shard("a"), "s2.safetensors": shard("b")}},
		{name: "tensor stored in two shards", maxSev: finding.Medium, rules: []string{RuleIndexDuplicate},
			index: `{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`,
			files: map[string][]byte{"s1.safetensors": shard("a"), "s2.safetensors": shard("a", "b")}},
		{name: "shard lacks a listed tensor", maxSev: finding.Low, rules: []string{RuleIndexMismatch},
			index: `{"weight_map":{"a":"s1.safetensors","z":"s1.safetensors"}}`,
			files: map[string][]byte{"s1.safetensors": shard("a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "model")
			p := writeFile(t, dir, "model.safetensors.index.json", []byte(tt.index))
			for n, data := range tt.files {
				writeFile(t, dir, n, data)
			}
			if tt.link[0] != "" {
				writeFile(t, root, "outside/s.safetensors", shard("a"))
				if err := os.Symlink(tt.link[1], filepath.Join(dir, tt.link[0])); err != nil {
					t.Skip("no symlinks:", err)
				}
			}
			f := run(t, p, []byte(tt.index))
			got := slices.Compact(slices.Sorted(slices.Values(f.Rules())))
			if !slices.Equal(got, tt.rules) && !(tt.rules == nil && got == nil) {
				t.Errorf("rules = %v, want %v; findings %v", got, tt.rules, f.Findings)
			}
			if s := f.MaxSeverity(); s != tt.maxSev {
				t.Errorf("max severity = %v, want %v", s, tt.maxSev)
			}
			if len(f.Errors) != 0 || !slices.Equal(f.Formats, []string{"safetensors-index"}) {
				t.Errorf("errors %v formats %v", f.Errors, f.Formats)
			}
		})
	}
}

func TestIndexMetadataAndMembers(t *testing.T) {
	idx := `{"metadata":{"total_size":3},"weight_map":{"a":"s1.safetensors","b":"../s2.safetensors"}}`
	var f scan.File
	env := scan.NewEnv(testPolicy(), scan.Limits{}, []scan.Scanner{IndexScanner{}}, &f)
	in := scan.Input{R: strings.NewReader(idx), Size: int64(len(idx)), Depth: 1,
		Loc: finding.Location{Path: "a.zip", Members: []string{"m/model.safetensors.index.json"}, Offset: -1}}
	if err := env.Dispatch(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if got := f.Rules(); !slices.Equal(got, []string{RuleIndexUnsafePath}) {
		t.Fatalf("a member is checked by name only: %v", f.Findings)
	}
	key := "m/model.safetensors.index.json:safetensors.index.shards"
	if !slices.Equal(f.Metadata[key].([]string), []string{"../s2.safetensors", "s1.safetensors"}) || f.Metadata["m/model.safetensors.index.json:safetensors.index.total_size"] != int64(3) {
		t.Fatalf("metadata %v", f.Metadata)
	}
}

func TestIndexNotFormat(t *testing.T) {
	for _, s := range []string{`{"weight_map":1}`, `{"a":"weight_map"}`, `{"weight_map":{"a":1}}`} {
		if _, err := ParseIndex([]byte(s)); err == nil {
			t.Errorf("ParseIndex(%s) accepted", s)
		}
	}
	if _, err := ParseIndex([]byte(`{"a":"weight_map"}`)); !errors.Is(err, scan.ErrNotFormat) {
		t.Errorf("JSON without weight_map: %v", err)
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add(file(twoTensors, make([]byte, 22)))
	f.Add(file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{}}`, []byte{1}))
	f.Add(file(`{"__metadata__":{"n":1}}`, nil))
	f.Add(file(`{"a":{"dtype":"F4","shape":[3,99999999999],"data_offsets":[0,2]}}  `, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *scan.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		if len(h.Problems) > maxProblems {
			t.Fatalf("%d problems", len(h.Problems))
		}
		_ = run(t, "f.safetensors", data)
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":3},"weight_map":{"a":"s1.safetensors","a":"../x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseIndex(data)
	})
}

// testPolicy is the default policy, parsed once for all tests.
var testPolicy = sync.OnceValue(policy.Default)
