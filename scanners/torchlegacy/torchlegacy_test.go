package torchlegacy

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
	"github.com/modelseal/modelseal/scanners/pickle"
)

var testPolicy = sync.OnceValue(policy.Default)

func run(t testing.TB, data []byte) *scan.File {
	t.Helper()
	file := &scan.File{Path: "t.pt"}
	env := scan.NewEnv(testPolicy(), scan.Limits{}, []scan.Scanner{New(), pickle.Scanner{}}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t.pt", Offset: -1}, Name: "t.pt"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file
}

const (
	magicLong1 = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."
	protoPkl   = "\x80\x02M\xe9\x03."
	sysInfo    = "\x80\x02}q\x00."
	evalPickle = "\x80\x02cbuiltins\neval\nq\x00X\x01\x00\x00\x001q\x01\x85q\x02Rq\x03."
)

// object is a pickle naming storages (key, type, numel) through BINPERSID.
func object(storages ...[3]string) string {
	var b strings.Builder
	b.WriteString("\x80\x02(")
	for _, s := range storages {
		b.WriteString("(X\x07\x00\x00\x00storage")
		b.WriteString("ctorch\n" + s[1] + "\n")
		b.WriteString(binunicode(s[0]))
		b.WriteString(binunicode("cpu"))
		b.WriteString("K" + s[2])
		b.WriteString("NtQ")
	}
	b.WriteString("l.")
	return b.String()
}

func binunicode(s string) string {
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
	return "X" + string(n[:]) + s
}

func keys(ks ...string) string {
	var b strings.Builder
	b.WriteString("\x80\x02](")
	for _, k := range ks {
		b.WriteString(binunicode(k))
	}
	b.WriteString("e.")
	return b.String()
}

func storage(count uint64, data int) string {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], count)
	return string(n[:]) + strings.Repeat("\x01", data)
}

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func TestScan(t *testing.T) {
	head := magicLong1 + protoPkl + sysInfo
	good := head + object([3]string{"0", "FloatStorage", "\x03"}, [3]string{"1", "LongStorage", "\x02"}) + keys("0", "1") + storage(3, 12) + storage(2, 16)
	tests := []struct {
		name    string
		data    string
		rules   []string
		formats []string
		errors  int
	}{
		{"benign", good, nil, []string{"pytorch-legacy"}, 0},
		{"no storages", head + "\x80\x02}q\x00." + "\x80\x02]q\x00.", nil, []string{"pytorch-legacy"}, 0},
		{"magic as INT text", "I0x1950a86a20f9469cfc6c\n." + protoPkl + sysInfo + object([3]string{"0", "ByteStorage", "\x01"}) + keys("0") + storage(1, 1), nil, []string{"pytorch-legacy"}, 0},
		{"magic as decimal LONG", "L119547037146038801333356L\n." + protoPkl + sysInfo + "\x80\x02}." + "\x80\x02].", nil, []string{"pytorch-legacy"}, 0},
		{"hidden pickle after data", good + evalPickle, []string{"pickle/dangerous-global", "torch/trailing-data"}, nil, 0},
		{"junk after data", good + "\x00\x00junk", []string{"torch/trailing-data"}, nil, 0},
		{"count past end", head + object([3]string{"0", "FloatStorage", "\x03"}) + keys("0") + storage(1<<62, 12), []string{"torch/storage-layout"}, nil, 0},
		{"count mismatch", head + object([3]string{"0", "FloatStorage", "\x03"}) + keys("0") + storage(2, 8) + "\x00\x00\x00\x00", []string{"torch/storage-layout"}, nil, 0},
		{"unknown key", head + object([3]string{"0", "FloatStorage", "\x03"}) + keys("7") + storage(3, 12), []string{"torch/storage-layout"}, nil, 0},
		{"unknown type", head + object([3]string{"0", "EvilStorage", "\x03"}) + keys("0") + storage(3, 12), []string{"pickle/unsafe-global", "torch/storage-layout"}, nil, 0},
		{"keys not a list", head + object() + "\x80\x02K\x01.", []string{"torch/storage-layout"}, nil, 0},
		{"missing key list", head + object(), nil, nil, 1},
		{"payload in the object", head + evalPickle + keys(), []string{"pickle/dangerous-global"}, []string{"pytorch-legacy"}, 0},
		{"payload in the key list", head + object() + evalPickle, []string{"pickle/dangerous-global", "torch/storage-layout"}, nil, 0},
		{"eval magic left to the pickle scanner", "\x80\x02cbuiltins\neval\nX\x16\x00\x00\x000x1950a86a20f9469cfc6c\x85R." + protoPkl, []string{"pickle/dangerous-global"}, []string{"pickle"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := run(t, []byte(tc.data))
			if got := rules(file); !slices.Equal(got, tc.rules) {
				t.Errorf("rules = %q, want %q (%v)", got, tc.rules, file.Findings)
			}
			if tc.formats != nil && !slices.Equal(file.Formats, tc.formats) {
				t.Errorf("formats = %q, want %q", file.Formats, tc.formats)
			}
			if len(file.Errors) != tc.errors {
				t.Errorf("errors = %v, want %d", file.Errors, tc.errors)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{magicLong1, true},
		{"\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x94.", true},
		{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19q\x00.", true},
		{"I119547037146038801333356\n.", true},
		{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x18.", false},
		{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", false},
		{"\x80\x02\x8a\x0b\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x00.", true},
		{"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19R.", false},
		{"\x80\x02cbuiltins\neval\n", false},
		{"", false},
	} {
		if got := New().Match([]byte(tc.head), int64(len(tc.head))); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.head, got, tc.want)
		}
	}
}

func TestElementSize(t *testing.T) {
	for typ, want := range map[string]int64{"torch.FloatStorage": 4, "torch.cuda.HalfStorage": 2, "torch.BoolStorage": 1,
		"torch.ComplexDoubleStorage": 16, "torch.Float": 0, "os.system": 0, "FloatStorage": 0} {
		if got := ElementSize(typ); got != want {
			t.Errorf("ElementSize(%q) = %d, want %d", typ, got, want)
		}
	}
}

func corpusFiles(patterns ...string) []string {
	var out []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		out = append(out, m...)
	}
	return out
}

func TestCorpus(t *testing.T) {
	files := corpusFiles("../../fixtures/*/torch_legacy_*.pt", "../../testdata/picklescan/files/data/pytorch_model.bin",
		"../../testdata/picklescan/files/data/pytorch_magic_bypass.pt")
	if len(files) == 0 {
		t.Fatal("the committed corpus is missing")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			file := run(t, data)
			malicious := strings.Contains(path, "malicious") || strings.Contains(path, "bypass")
			var critical bool
			for _, f := range file.Findings {
				critical = critical || f.Severity >= finding.High
			}
			if malicious != critical {
				t.Errorf("malicious=%v but findings %v", malicious, file.Findings)
			}
			if len(file.Errors) > 0 {
				t.Errorf("errors: %v", file.Errors)
			}
			if !malicious && !slices.Contains(file.Formats, "pytorch-legacy") {
				t.Errorf("formats = %q", file.Formats)
			}
		})
	}
}

func FuzzScan(f *testing.F) {
	head := magicLong1 + protoPkl + sysInfo
	f.Add([]byte(head + object([3]string{"0", "FloatStorage", "\x03"}) + keys("0") + storage(3, 12) + evalPickle))
	for _, path := range corpusFiles("../../fixtures/benign/torch_legacy_*.pt") {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run(t, data)
	})
}
