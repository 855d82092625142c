package joblib

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// probe claims streams that start with "PROBE" or hold a tar header, and
// records them.
type probe struct{ got map[string]string }

func (p *probe) Format() string { return "probe" }
func (p *probe) Match(head []byte, _ int64) bool {
	return bytes.HasPrefix(head, []byte("PROBE")) || looksLikeTar(head)
}
func (p *probe) Scan(_ context.Context, in scan.Input, _ *scan.Env) error {
	b, _ := io.ReadAll(io.NewSectionReader(in.R, 0, in.Size))
	p.got[in.Loc.Member()] = string(b)
	return nil
}

var testPolicy = sync.OnceValue(policy.Default)

func run(t testing.TB, data []byte, limits scan.Limits) (*scan.File, *probe) {
	t.Helper()
	p := &probe{got: map[string]string{}}
	file := &scan.File{Path: "t"}
	env := scan.NewEnv(testPolicy(), limits, []scan.Scanner{New(), p, pickle.Scanner{}}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t", Offset: -1}, Name: "t"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file, p
}

func compress(t testing.TB, c Codec, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch c {
	case Zlib:
		w = zlib.NewWriter(&b)
	case Gzip:
		w = gzip.NewWriter(&b)
	case XZ:
		w, err = xz.NewWriter(&b)
	case LZMA:
		w, err = lzma.NewWriter(&b)
	case LZ4:
		w = lz4.NewWriter(&b)
	case Zstd:
		w, err = zstd.NewWriter(&b)
	case ZFile:
		b.WriteString("ZF" + fmt.Sprintf("%-19s", fmt.Sprintf("0x%x", len(data))))
		w = zlib.NewWriter(&b)
	default:
		t.Fatalf("no writer for %s", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// evalPickle is protocol 2: builtins.eval('1').
const evalPickle = "\x80\x02cbuiltins\neval\nq\x00X\x01\x00\x00\x001q\x01\x85q\x02Rq\x03."

// listPickle is protocol 2: [1, 2].
const listPickle = "\x80\x02]q\x00(K\x01K\x02e."

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule+" "+x.Location.Member())
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func TestScan(t *testing.T) {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "x.pkl", Mode: 0o644, Size: int64(len(evalPickle))})
	tw.Write([]byte(evalPickle))
	tw.Close()

	type tc struct {
		name    string
		data    []byte
		limits  scan.Limits
		rules   []string
		formats []string
		probe   []string
		errors  int
	}
	var tests []tc
	for _, c := range []Codec{Zlib, Gzip, XZ, LZMA, LZ4, Zstd, ZFile} {
		m := "<" + string(c) + ">"
		tests = append(tests,
			tc{name: string(c) + " eval", data: compress(t, c, []byte(evalPickle)), rules: []string{"pickle/dangerous-global " + m}, formats: []string{"compressed", string(c), "pickle"}},
			tc{name: string(c) + " benign", data: compress(t, c, []byte(listPickle)), formats: []string{"compressed", string(c), "pickle"}},
			tc{name: string(c) + " other content", data: compress(t, c, []byte("PROBE data")), probe: []string{m}, formats: []string{"compressed", string(c), "probe"}},
		)
	}
	full := compress(t, Gzip, []byte(evalPickle+evalPickle))
	tests = append(tests,
		tc{name: "tar in gzip", data: compress(t, Gzip, tarball.Bytes()), probe: []string{"<gzip>"}},
		tc{name: "protocol 0 pickle in gzip", data: compress(t, Gzip, []byte("cos\nsystem\n(S'x'\ntR.")), rules: []string{"pickle/dangerous-global <gzip>"}},
		tc{name: "truncated stream keeps findings", data: full[:len(full)-12], rules: []string{"pickle/dangerous-global <gzip>"}, errors: 1},
		tc{name: "ratio bomb", data: compress(t, Zlib, append([]byte("\x80\x02"), make([]byte, 8<<20)...)), rules: []string{"archive/compression-ratio <zlib>"}},
		tc{name: "budget", data: compress(t, Zlib, []byte(evalPickle+strings.Repeat("N", 4000))), limits: scan.Limits{MaxExpanded: 100}, rules: []string{"archive/expansion-limit <zlib>", "pickle/dangerous-global <zlib>", "pickle/trailing-data <zlib>"}},
		tc{name: "zlib magic in text", data: []byte("x^ hello, not compressed at all, just text that happens to start like zlib"), formats: []string{}},
	)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file, p := run(t, tc.data, tc.limits)
			if got := rules(file); !slices.Equal(got, tc.rules) {
				t.Errorf("rules = %q, want %q", got, tc.rules)
			}
			if tc.formats != nil && !slices.Equal(file.Formats, tc.formats) && !(len(tc.formats) == 0 && len(file.Formats) == 0) {
				t.Errorf("formats = %q, want %q", file.Formats, tc.formats)
			}
			var got []string
			for k := range p.got {
				got = append(got, k)
			}
			if !slices.Equal(got, tc.probe) {
				t.Errorf("members handed to the registry = %q, want %q", got, tc.probe)
			}
			if len(file.Errors) != tc.errors {
				t.Errorf("errors = %v, want %d", file.Errors, tc.errors)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		head string
		want Codec
	}{
		{"\x78\x9c", Zlib}, {"\x78\x01", Zlib}, {"\x78\xda", Zlib}, {"\x78\x00", ""}, {"\x1f\x8b\x08", Gzip}, {"BZh9", Bzip2},
		{"\x5d\x00\x00\x80", LZMA}, {"\xfd7zXZ\x00", XZ}, {"\x04\x22\x4d\x18", LZ4}, {"\x28\xb5\x2f\xfd", Zstd},
		{"ZF0x10", ZFile}, {"\x80\x04", ""}, {"", ""},
	} {
		if got := Detect([]byte(tc.head)); got != tc.want {
			t.Errorf("Detect(%q) = %q, want %q", tc.head, got, tc.want)
		}
	}
}

func fixtures(pattern string) []string {
	m, _ := filepath.Glob(filepath.Join("../../fixtures", pattern))
	return m
}

func TestFixtures(t *testing.T) {
	n := 0
	for _, path := range append(fixtures("benign/*_*.joblib"), fixtures("malicious/joblib_payload_*.joblib")...) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if Detect(data) == "" {
			continue // uncompressed: the pickle scanner's
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			file, _ := run(t, data, scan.Limits{})
			malicious := strings.Contains(path, "malicious")
			var dangerous bool
			for _, f := range file.Findings {
				if f.Rule == "pickle/dangerous-global" && f.Global == "os.system" {
					dangerous = true
				}
			}
			if malicious && !dangerous {
				t.Errorf("os.system not reported: %v", file.Findings)
			}
			if !malicious && len(file.Findings) > 0 {
				t.Errorf("benign fixture has findings: %v", file.Findings)
			}
			if len(file.Errors) > 0 {
				t.Errorf("errors: %v", file.Errors)
			}
			if !slices.Contains(file.Formats, "joblib") {
				t.Errorf("formats %q lack joblib", file.Formats)
			}
		})
	}
	if n == 0 {
		t.Fatal("the committed fixtures are missing")
	}
}

func FuzzScan(f *testing.F) {
	for _, c := range []Codec{Zlib, Gzip, XZ, LZMA, LZ4, Zstd, ZFile} {
		f.Add(compress(f, c, []byte(evalPickle)))
	}
	for _, path := range fixtures("*/*.joblib") {
		if b, err := os.ReadFile(path); err == nil && Detect(b) != "" {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run(t, data, scan.Limits{MaxExpanded: 4 << 20, SpillBytes: 1 << 20})
	})
}

func TestXZDictSize(t *testing.T) {
	var b bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 20}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(evalPickle))
	w.Close()
	if got, ok := xzDictSize(b.Bytes()); !ok || got != 1<<20 {
		t.Errorf("xzDictSize = %d, %v; want %d", got, ok, 1<<20)
	}
	// A header claiming a 4 GiB dictionary is refused before allocation.
	huge := slices.Clone(b.Bytes())
	for i := 12; i < 12+int(huge[12]+1)*4-4; i++ {
		if huge[i] == 0x21 && huge[i+1] == 1 {
			huge[i+2] = 40
			break
		}
	}
	if got, ok := xzDictSize(huge); !ok || got != 1<<32-1 {
		t.Errorf("xzDictSize(huge) = %d, %v", got, ok)
	}
	if _, err := Open(XZ, bytes.NewReader(huge)); err == nil {
		t.Error("Open accepted a 4 GiB dictionary")
	}
}
