package tarscan

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/joblib"
	"github.com/modelseal/modelseal/scanners/pickle"
)

var testPolicy = sync.OnceValue(policy.Default)

// probe records members that start with "PROBE".
type probe struct{ got map[string]string }

func (p *probe) Format() string { return "probe" }
func (p *probe) Match(head []byte, _ int64) bool {
	return bytes.HasPrefix(head, []byte("PROBE"))
}
func (p *probe) Scan(_ context.Context, in scan.Input, _ *scan.Env) error {
	b, _ := io.ReadAll(io.NewSectionReader(in.R, 0, in.Size))
	p.got[in.Loc.Member()] = string(b)
	return nil
}

func run(t testing.TB, data []byte) (*scan.File, *probe) {
	t.Helper()
	p := &probe{got: map[string]string{}}
	file := &scan.File{Path: "t.tar"}
	env := scan.NewEnv(testPolicy(), scan.Limits{MaxExpanded: 64 << 20}, []scan.Scanner{New(), joblib.New(), p, pickle.Scanner{}}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t.tar", Offset: -1}, Name: "t.tar"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file, p
}

type member struct {
	name, data, link string
	typ              byte
}

func build(t testing.TB, members ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.link, Mode: 0o644, Size: int64(len(m.data)), Format: tar.FormatPAX}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			w.Write([]byte(m.data))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	evalPickle = "\x80\x02cbuiltins\neval\nq\x00X\x01\x00\x00\x001q\x01\x85q\x02Rq\x03."
	proto0Eval = "cbuiltins\neval\n(S'1'\ntR."
)

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule+" "+x.Location.Member())
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// le returns v as 8 little-endian bytes.
func le(v uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return string(b[:])
}

// legacy builds a PyTorch legacy tar with the given storages and tensors
// members.
func legacy(t testing.TB, storages, tensors string) []byte {
	return build(t,
		member{name: "sys_info", data: "\x80\x02}q\x00."},
		member{name: "pickle", data: "\x80\x02}q\x00."},
		member{name: "tensors", data: tensors},
		member{name: "storages", data: storages})
}

const (
	storageHdr = "\x80\x02M\xe8\x03X\x03\x00\x00\x00cpuq\x00ctorch\nFloatStorage\nq\x01\x87q\x02."
	tensorHdr  = "\x80\x02K\x00M\xe8\x03ctorch\nFloatTensor\nq\x00\x87q\x01."
	views      = "\x80\x02]q\x00."
)

func TestScan(t *testing.T) {
	goodStorages := "\x80\x02K\x01." + storageHdr + le(3) + strings.Repeat("\x00", 12) + views
	goodTensors := "\x80\x02K\x01." + tensorHdr + le(1) + le(3) + le(1) + le(0)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(build(t, member{name: "inner/x.pkl", data: evalPickle}, member{name: "p", data: "PROBE"}))
	zw.Close()
	var zst bytes.Buffer
	zs, _ := zstd.NewWriter(&zst)
	zs.Write(build(t, member{name: "m.pkl", data: evalPickle}))
	zs.Close()
	truncated := build(t, member{name: "a", data: "PROBE" + strings.Repeat("x", 2000)})[:1200]

	tests := []struct {
		name    string
		data    []byte
		rules   []string
		probe   []string
		formats []string
		errors  int
	}{
		{name: "plain", data: build(t, member{name: "dir/", typ: tar.TypeDir}, member{name: "dir/a", data: "PROBE a"}, member{name: "b.pkl", data: evalPickle}),
			rules: []string{"pickle/dangerous-global b.pkl"}, probe: []string{"dir/a"}, formats: []string{"tar", "probe", "pickle"}},
		{name: "unsafe names", data: build(t, member{name: "../up", data: "PROBE"}, member{name: "/abs", data: "PROBE"}, member{name: `a\b`, data: "PROBE"}),
			rules: []string{"archive/unsafe-name ../up", "archive/unsafe-name /abs", `archive/unsafe-name a\b`}, probe: []string{"../up", "/abs", `a\b`}},
		{name: "links", data: build(t, member{name: "s", typ: tar.TypeSymlink, link: "/etc/passwd"}, member{name: "h", typ: tar.TypeLink, link: "s"}),
			rules: []string{"archive/link h", "archive/link s"}},
		{name: "tar.gz through the compressed scanner", data: gz.Bytes(),
			rules: []string{"pickle/dangerous-global <gzip>!inner/x.pkl"}, probe: []string{"<gzip>!p"}},
		{name: "tar.zst", data: zst.Bytes(), rules: []string{"pickle/dangerous-global <zstd>!m.pkl"}},
		{name: "truncated member", data: truncated, probe: []string{"a"}, errors: 1},
		{name: "pickle polyglot header", data: build(t, member{name: proto0Eval, data: "PROBE"}),
			rules: []string{"pickle/dangerous-global ", "pickle/trailing-data "}, probe: []string{proto0Eval}},
		{name: "legacy benign", data: legacy(t, goodStorages, goodTensors), formats: []string{"tar", "pytorch-legacy-tar", "pickle"}},
		{name: "legacy pickle in storage header", data: legacy(t, "\x80\x02K\x01."+evalPickle+le(0)+views, goodTensors),
			rules: []string{"pickle/dangerous-global storages", "torch/storage-layout storages"}},
		{name: "legacy storage count past end", data: legacy(t, "\x80\x02K\x01."+storageHdr+le(1<<60)+views, goodTensors),
			rules: []string{"torch/storage-layout storages"}},
		{name: "legacy huge storage count", data: legacy(t, "\x80\x02J\xff\xff\xff\x7f."+storageHdr, goodTensors),
			rules: []string{"torch/storage-layout storages"}},
		{name: "legacy negative ndim", data: legacy(t, goodStorages, "\x80\x02K\x01."+tensorHdr+le(0xffffffff)+le(0)),
			rules: []string{"torch/storage-layout tensors"}},
		{name: "legacy hidden pickle after tensors", data: legacy(t, goodStorages, goodTensors+evalPickle),
			rules: []string{"pickle/dangerous-global tensors", "torch/trailing-data tensors"}},
		{name: "legacy payload in views", data: legacy(t, "\x80\x02K\x00."+evalPickle, goodTensors),
			rules: []string{"pickle/dangerous-global storages"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file, p := run(t, tc.data)
			if got := rules(file); !slices.Equal(got, tc.rules) {
				t.Errorf("rules = %q, want %q\n%v", got, tc.rules, file.Findings)
			}
			if got := keys(p.got); !slices.Equal(got, tc.probe) {
				t.Errorf("probed = %q, want %q", got, tc.probe)
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
	good := build(t, member{name: "a", data: "x"})
	bad := slices.Clone(good)
	bad[0] ^= 1 // checksum no longer matches
	for _, tc := range []struct {
		data []byte
		want bool
	}{{good, true}, {bad, false}, {good[:300], false}, {[]byte(evalPickle), false}} {
		if got := New().Match(tc.data[:min(len(tc.data), scan.HeadSize)], int64(len(tc.data))); got != tc.want {
			t.Errorf("Match(%q...) = %v, want %v", tc.data[:min(len(tc.data), 8)], got, tc.want)
		}
	}
}

func TestFixtures(t *testing.T) {
	paths, _ := filepath.Glob("../../fixtures/*/torch_legacy_tar_*")
	if len(paths) == 0 {
		t.Fatal("the committed fixtures are missing")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			file, _ := run(t, data)
			malicious := strings.Contains(path, "malicious")
			var dangerous bool
			for _, f := range file.Findings {
				dangerous = dangerous || f.Severity >= finding.High
			}
			if dangerous != malicious {
				t.Errorf("malicious=%v, findings %v", malicious, file.Findings)
			}
			if len(file.Errors) > 0 {
				t.Errorf("errors: %v", file.Errors)
			}
			if !slices.Contains(file.Formats, "pytorch-legacy-tar") {
				t.Errorf("formats = %q", file.Formats)
			}
		})
	}
}

func FuzzScan(f *testing.F) {
	f.Add(build(f, member{name: "a", data: evalPickle}, member{name: "s", typ: tar.TypeSymlink, link: "../x"}))
	f.Add(legacy(f, "\x80\x02K\x01."+storageHdr+le(3)+strings.Repeat("\x00", 12)+views, "\x80\x02K\x01."+tensorHdr+le(1)+le(3)+le(1)+le(0)))
	paths, _ := filepath.Glob("../../fixtures/*/torch_legacy_tar_*")
	for _, path := range paths {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run(t, data)
	})
}
