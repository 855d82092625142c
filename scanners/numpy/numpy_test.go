package numpy

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// npy builds a .npy stream with the given version, header text and body.
func npy(major byte, header string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	b.WriteByte(major)
	b.WriteByte(0)
	if major == 1 {
		binary.Write(&b, binary.LittleEndian, uint16(len(header)))
	} else {
		binary.Write(&b, binary.LittleEndian, uint32(len(header)))
	}
	b.WriteString(header)
	b.Write(body)
	return b.Bytes()
}

func hdr(descr, shape string) string {
	return "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }" + strings.Repeat(" ", 20) + "\n"
}

func run(t testing.TB, data []byte) *scan.File {
	t.Helper()
	file := &scan.File{Path: "t.npy"}
	env := scan.NewEnv(testPolicy(), scan.Limits{}, []scan.Scanner{New()}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t.npy", Offset: -1}, Name: "t.npy"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file
}

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// evalPickle is protocol 2: builtins.eval('1') via GLOBAL and REDUCE.
const evalPickle = "\x80\x02cbuiltins\neval\nq\x00X\x01\x00\x00\x001q\x01\x85q\x02Rq\x03."

// listPickle is protocol 2: [1, 2].
const listPickle = "\x80\x02]q\x00(K\x01K\x02e."

func TestScan(t *testing.T) {
	f32 := make([]byte, 3*4*4)
	tests := []struct {
		name   string
		data   []byte
		rules  []string
		errors int
	}{
		{"float32 exact", npy(1, hdr("'<f4'", "(3, 4)"), f32), nil, 0},
		{"version 2", npy(2, hdr("'<f4'", "(3, 4)"), f32), nil, 0},
		{"version 3 utf8 field", npy(3, hdr("[('é', '<f4')]", "(3, 4)"), f32), nil, 0},
		{"scalar shape ()", npy(1, hdr("'<i8'", "()"), make([]byte, 8)), nil, 0},
		{"python2 long", npy(1, hdr("'<i8'", "(2L,)"), make([]byte, 16)), nil, 0},
		{"sub-array", npy(1, hdr("('<f4', (2, 3))", "(2,)"), make([]byte, 2*6*4)), nil, 0},
		{"structured", npy(1, hdr("[('a', '<i4'), ('b', '<f8', (2,))]", "(3,)"), make([]byte, 3*20)), nil, 0},
		{"unicode", npy(1, hdr("'<U3'", "(2,)"), make([]byte, 24)), nil, 0},
		{"datetime", npy(1, hdr("'<M8[ns]'", "(2,)"), make([]byte, 16)), nil, 0},
		{"zero-size", npy(1, hdr("'<f8'", "(0, 5)"), nil), nil, 0},
		{"truncated", npy(1, hdr("'<f4'", "(3, 4)"), f32[:40]), []string{"numpy/size-mismatch"}, 0},
		{"trailing", npy(1, hdr("'<f4'", "(3, 4)"), append(slices.Clone(f32), evalPickle...)), []string{"numpy/size-mismatch"}, 0},
		{"huge shape", npy(1, hdr("'<f8'", "(4611686018427387904, 4)"), f32), []string{"numpy/size-mismatch"}, 0},
		{"object benign", npy(1, hdr("'|O'", "(2,)"), []byte(listPickle)), nil, 0},
		{"object eval", npy(1, hdr("'|O'", "(2,)"), []byte(evalPickle)), []string{"pickle/dangerous-global"}, 0},
		{"object field eval", npy(1, hdr("[('a', '<i4'), ('b', '|O')]", "(1,)"), []byte(evalPickle)), []string{"pickle/dangerous-global"}, 0},
		{"object sub-array eval", npy(1, hdr("('O', (2,))", "(1,)"), []byte(evalPickle)), []string{"pickle/dangerous-global"}, 0},
		{"object name eval", npy(1, hdr("'object'", "(1,)"), []byte(evalPickle)), []string{"pickle/dangerous-global"}, 0},
		{"object not a pickle", npy(1, hdr("'|O'", "(2,)"), []byte("\xff\xff")), nil, 1},
		{"unknown dtype hides pickle", npy(1, hdr("'weird'", "(1,)"), []byte(evalPickle)), []string{"pickle/dangerous-global"}, 1},
		{"bad keys", npy(1, "{'descr': '<f4', 'shape': (1,)}", make([]byte, 4)), nil, 1},
		{"extra key", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", make([]byte, 4)), nil, 1},
		{"shape not tuple", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': 3}", make([]byte, 12)), nil, 1},
		{"fortran_order int", npy(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", make([]byte, 4)), nil, 1},
		{"not a literal", npy(1, "__import__('os').system('x')", nil), nil, 1},
		{"bad version", append([]byte(magic+"\x04\x00\x10\x00"), make([]byte, 16)...), nil, 1},
		{"header past end", []byte(magic + "\x01\x00\xff\x00{}"), nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := run(t, tc.data)
			if got := rules(file); !slices.Equal(got, tc.rules) {
				t.Errorf("rules = %q, want %q (findings %v)", got, tc.rules, file.Findings)
			}
			if len(file.Errors) != tc.errors {
				t.Errorf("errors = %v, want %d", file.Errors, tc.errors)
			}
			if !slices.Contains(file.Formats, "numpy") {
				t.Errorf("formats = %q, want numpy", file.Formats)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		header   string
		itemsize int64
		object   bool
		shape    []int64
		fortran  bool
	}{
		{"{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 4, false, []int64{3, 4}, true},
		{`{"descr": "|b1", "fortran_order": False, "shape": (True, 2)}`, 1, false, []int64{1, 2}, false},
		{"{'descr': [('x', '<i2'), ('', '|V6')], 'fortran_order': False, 'shape': (5,)}", 8, false, []int64{5}, false},
		{"{'descr': [(('title', 'n'), '|O')], 'fortran_order': False, 'shape': (1,)}", 8, true, []int64{1}, false},
		{"{'descr': '>c16', 'fortran_order': False, 'shape': ()}", 16, false, nil, false},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'descr': '|O'}", 8, true, []int64{1}, false},
	}
	for _, tc := range tests {
		data := npy(1, tc.header, nil)
		h, err := ReadHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Errorf("%s: %v", tc.header, err)
			continue
		}
		if h.ItemSize != tc.itemsize || h.Object != tc.object || !slices.Equal(h.Shape, tc.shape) || h.FortranOrder != tc.fortran {
			t.Errorf("%s: got itemsize %d object %v shape %v fortran %v", tc.header, h.ItemSize, h.Object, h.Shape, h.FortranOrder)
		}
		if h.DataOffset != int64(len(data)) {
			t.Errorf("%s: data offset %d, want %d", tc.header, h.DataOffset, len(data))
		}
	}
}

func TestParseLiteralRejects(t *testing.T) {
	for _, s := range []string{"", "{", "{'a' 1}", "{'a': 1 'b': 2}", "('a' 'b')", "'unterminated", "{'a': x}", "[1, 2", "0x10", "007", "{'a': 1}}", "(" + strings.Repeat("(", 40) + ")"} {
		if v, err := parseLiteral(s, true); err == nil {
			t.Errorf("parseLiteral(%q) = %v, want an error", s, v)
		}
	}
}

func files(t *testing.T, pattern string) []string {
	var out []string
	for _, root := range []string{"../.."} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		out = append(out, m...)
	}
	return out
}

func TestCorpus(t *testing.T) {
	tests := []struct {
		pattern string
		rules   []string
	}{
		{"testdata/picklescan/files/data2/int_array.npy", nil},
		{"files/data2/int_array.npy", nil},
		{"testdata/picklescan/files/data2/object_array.npy", nil},
		{"files/data2/object_array.npy", nil},
		{"fixtures/benign/numpy_*.npy", nil},
		{"files/data2/dns_exfiltration.npy", []string{"pickle/dangerous-global"}},
	}
	n := 0
	for _, tc := range tests {
		for _, path := range files(t, tc.pattern) {
			n++
			t.Run(path, func(t *testing.T) {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				file := run(t, data)
				if got := rules(file); !slices.Equal(got, tc.rules) {
					t.Errorf("rules = %q, want %q (findings %v)", got, tc.rules, file.Findings)
				}
				if len(file.Errors) != 0 {
					t.Errorf("errors: %v", file.Errors)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("the committed corpus and fixtures are missing")
	}
}

func FuzzScan(f *testing.F) {
	f.Add(npy(1, hdr("'<f4'", "(3, 4)"), make([]byte, 48)))
	f.Add(npy(3, hdr("[('a', '<i4'), ('b', '|O')]", "(1,)"), []byte(evalPickle)))
	f.Add(npy(2, hdr("('<f4', (2, 3))", "(2L,)"), nil))
	for _, pattern := range []string{"files/data2/*.npy", "fixtures/benign/*.npy"} {
		for _, path := range files(nil, pattern) {
			if b, err := os.ReadFile(path); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run(t, data)
	})
}

// testPolicy builds the default policy once: parsing it per fuzz input
// would dominate the run.
var testPolicy = sync.OnceValue(policy.Default)
