package zipscan

import (
	"archive/zip"
	"bytes"
	"compress/flate"
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

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// probe is a catch-all scanner that records what the zip scanner hands back
// to the registry.
type probe struct {
	got map[string][]byte
}

func (p *probe) Format() string                  { return "probe" }
func (p *probe) Match(head []byte, _ int64) bool { return true }
func (p *probe) Scan(_ context.Context, in scan.Input, _ *scan.Env) error {
	b, err := io.ReadAll(io.NewSectionReader(in.R, 0, in.Size))
	if err != nil {
		return err
	}
	p.got[in.Loc.Member()] = b
	return nil
}

func run(t testing.TB, data []byte, limits scan.Limits) (*scan.File, *probe) {
	t.Helper()
	p := &probe{got: map[string][]byte{}}
	file := &scan.File{Path: "t.zip"}
	env := scan.NewEnv(testPolicy(), limits, []scan.Scanner{New(), p}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t.zip", Offset: -1}, Name: "t.zip"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file, p
}

type entry struct {
	name   string
	data   string
	method uint16
}

func build(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range entries {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// headers returns the offsets of the local and central headers of entry i.
func headers(t testing.TB, data []byte, i int) (local, central int) {
	t.Helper()
	r, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &headerRecorder{r: bytes.NewReader(data)}
	r2, _ := zip.NewReader(rec, int64(len(data)))
	if _, err := r2.File[i].DataOffset(); err != nil {
		t.Fatal(err)
	}
	local = int(rec.lastOff)
	central = -1
	seen := 0
	for off := 0; off+4 <= len(data); off++ {
		if binary.LittleEndian.Uint32(data[off:]) == 0x02014b50 {
			if seen == i {
				central = off
				break
			}
			seen++
		}
	}
	_ = r
	return local, central
}

func setFlags(t testing.TB, data []byte, i int, flags uint16) []byte {
	data = slices.Clone(data)
	l, c := headers(t, data, i)
	binary.LittleEndian.PutUint16(data[l+6:], flags)
	binary.LittleEndian.PutUint16(data[c+8:], flags)
	return data
}

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule+" "+x.Location.Member())
	}
	sort.Strings(out)
	return out
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const pkl = "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93."

func TestScan(t *testing.T) {
	plain := build(t, entry{name: "a.pkl", data: pkl}, entry{name: "b.bin", data: "hello", method: zip.Deflate})

	dup := build(t, entry{name: "x.pkl", data: "first"}, entry{name: "x.pkl", data: pkl, method: zip.Deflate})

	unsafe := build(t, entry{name: "../up", data: "1"}, entry{name: "/abs", data: "2"}, entry{name: `a\b`, data: "3"}, entry{name: "n\x00ul", data: "4"}, entry{name: "C:/x", data: "5"})

	torch := build(t,
		entry{name: "model/data.pkl", data: pkl},
		entry{name: "model/data/0", data: "\x80\x02garbage tensor bytes"},
		entry{name: "model/data/1", data: "raw", method: zip.Deflate},
		entry{name: "model/version", data: "3\n"},
		entry{name: "model/byteorder", data: "little"},
		entry{name: "model/.data/serialization_id", data: "1234567890"},
		entry{name: "model/.data/version", data: "cos\nsystem\n."}, // not what torch writes: scanned
		entry{name: "model/data/evil", data: pkl},                  // not a storage key: scanned
		entry{name: "other/data/0", data: pkl},                     // no other/data.pkl: scanned
	)

	mismatch := build(t, entry{name: "data.pkl", data: pkl})
	{
		l, _ := headers(t, mismatch, 0)
		copy(mismatch[l+30:], "datap.kl")
	}

	crcStored := build(t, entry{name: "data.pkl", data: pkl})
	{
		i := bytes.Index(crcStored, []byte("eval"))
		crcStored[i] = 'E'
	}
	crcDeflate := func() []byte {
		var buf bytes.Buffer
		w := zip.NewWriter(&buf)
		fw, _ := w.CreateRaw(&zip.FileHeader{Name: "data.pkl", Method: zip.Deflate, CRC32: 0xdeadbeef, CompressedSize64: 0, UncompressedSize64: uint64(len(pkl))})
		var comp bytes.Buffer
		cw, _ := flateWriter(&comp)
		cw.Write([]byte(pkl))
		cw.Close()
		fw.Write(comp.Bytes())
		// CreateRaw takes the sizes from the header: patch them below.
		w.Close()
		return fixRawSizes(t, buf.Bytes(), uint64(comp.Len()))
	}()

	bomb := build(t, entry{name: "zeros", data: strings.Repeat("\x00", 4<<20), method: zip.Deflate})

	tests := []struct {
		name      string
		data      []byte
		limits    scan.Limits
		members   []string          // what the registry was handed
		content   map[string]string // member -> exact content seen
		rules     []string
		formats   []string
		errors    int
		unscanned int
	}{
		{name: "plain", data: plain, members: []string{"a.pkl", "b.bin"}, content: map[string]string{"a.pkl": pkl, "b.bin": "hello"}, formats: []string{"zip", "probe"}},
		{name: "duplicates", data: dup, members: []string{"x.pkl", "x.pkl [entry 2]"},
			content: map[string]string{"x.pkl": "first", "x.pkl [entry 2]": pkl},
			rules:   []string{"zip/duplicate-name x.pkl [entry 2]"}},
		{name: "unsafe names", data: unsafe, members: []string{"../up", "/abs", "C:/x", `a\b`, "n\x00ul"},
			rules: []string{"zip/unsafe-name ../up", "zip/unsafe-name /abs", "zip/unsafe-name C:/x", `zip/unsafe-name a\b`, "zip/unsafe-name n\x00ul"}},
		{name: "pytorch zip", data: torch,
			members: []string{"model/.data/version", "model/data.pkl", "model/data/evil", "other/data/0"},
			formats: []string{"zip", "pytorch-zip", "probe"}},
		{name: "flag 0x1", data: setFlags(t, plain, 0, 0x1), members: []string{"a.pkl", "b.bin"}, content: map[string]string{"a.pkl": pkl},
			rules: []string{"zip/flag-bits a.pkl"}},
		{name: "flag 0x20", data: setFlags(t, plain, 0, 0x20), members: []string{"a.pkl", "b.bin"}, content: map[string]string{"a.pkl": pkl},
			rules: []string{"zip/flag-bits a.pkl"}},
		{name: "flag 0x40 deflated", data: setFlags(t, plain, 1, 0x48), members: []string{"a.pkl", "b.bin"}, content: map[string]string{"b.bin": "hello"},
			rules: []string{"zip/flag-bits b.bin"}},
		{name: "name mismatch", data: mismatch, members: []string{"data.pkl"}, content: map[string]string{"data.pkl": pkl},
			rules: []string{"zip/name-mismatch data.pkl"}},
		{name: "crc stored", data: crcStored, members: []string{"data.pkl"}, content: map[string]string{"data.pkl": strings.Replace(pkl, "eval", "Eval", 1)},
			rules: []string{"zip/crc-mismatch data.pkl"}},
		{name: "crc deflated", data: crcDeflate, members: []string{"data.pkl"}, content: map[string]string{"data.pkl": pkl},
			rules: []string{"zip/crc-mismatch data.pkl"}},
		{name: "ratio bomb", data: bomb, rules: []string{"archive/compression-ratio zeros"}},
		{name: "expansion budget", data: plain, limits: scan.Limits{MaxExpanded: 10}, members: []string{"b.bin"},
			rules: []string{"archive/expansion-limit a.pkl"}},
		{name: "member limit", data: plain, limits: scan.Limits{MaxMembers: 1}, members: []string{"a.pkl"},
			rules: []string{"archive/member-limit b.bin"}},
		{name: "not a zip after all", data: []byte("PK\x03\x04 but nothing else"), errors: 1, formats: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file, p := run(t, tc.data, tc.limits)
			if got := keys(p.got); !slices.Equal(got, tc.members) {
				t.Errorf("members scanned = %q, want %q", got, tc.members)
			}
			for m, want := range tc.content {
				if got := string(p.got[m]); got != want {
					t.Errorf("member %q content = %q, want %q", m, got, want)
				}
			}
			want := slices.Clone(tc.rules)
			sort.Strings(want)
			if got := rules(file); !slices.Equal(got, want) {
				t.Errorf("findings = %q, want %q", got, want)
			}
			if tc.formats != nil && !slices.Equal(file.Formats, tc.formats) {
				t.Errorf("formats = %q, want %q", file.Formats, tc.formats)
			}
			if len(file.Errors) != tc.errors {
				t.Errorf("errors = %v, want %d", file.Errors, tc.errors)
			}
			if len(file.Unscanned) != tc.unscanned {
				t.Errorf("unscanned = %v, want %d", file.Unscanned, tc.unscanned)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{"PK\x03\x04", true}, {"PK\x05\x06", true}, {"PK\x07\x08PK\x03\x04", true},
		{"PK\x01\x02", false}, {"PK", false}, {"\x80\x04PK", false}, {"", false},
	} {
		if got := New().Match([]byte(tc.head), int64(len(tc.head))); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.head, got, tc.want)
		}
	}
}

// corpus is the picklescan corpus; tests using it are skipped when absent.
func corpus(t *testing.T, name string) []byte {
	t.Helper()
	for _, dir := range []string{"../../testdata/picklescan/files"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return b
		}
	}
	t.Fatalf("committed corpus file %s is missing", name)
	return nil
}

func TestCorpus(t *testing.T) {
	tests := []struct {
		file      string
		member    string // the member that must reach the registry with a pickle in it
		rules     []string
		unscanned int
	}{
		{"data/malicious1.zip", "data.pkl", nil, 0},
		{"data/malicious1_0x1.zip", "model/config.pkl", []string{"zip/flag-bits model/config.pkl"}, 0},
		{"data/malicious1_0x20.zip", "model/config.pkl", []string{"zip/flag-bits model/config.pkl"}, 0},
		{"data/malicious1_0x40.zip", "model/config.pkl", []string{"zip/flag-bits model/config.pkl"}, 0},
		{"data/malicious1_central_directory.zip", "data.pkl", []string{"zip/name-mismatch data.pkl"}, 0},
		{"data/malicious1_wrong_ext.zip", "data.txt", nil, 0},
		{"data2/malicious1_crc.zip", "data.pkl", []string{"zip/crc-mismatch data.pkl"}, 0},
		{"data/new_pytorch_model.bin", "archive/data.pkl", nil, 0},
		{"data2/object_arrays_compressed.npz", "a.npy", nil, 0},
		{"data/benign_password_protected.zip", "", []string{"zip/encrypted test.txt", "zip/flag-bits test.txt"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data := corpus(t, tc.file)
			file, p := run(t, data, scan.Limits{})
			if tc.member != "" {
				b, ok := p.got[tc.member]
				if !ok {
					t.Fatalf("member %q not scanned; scanned %q", tc.member, keys(p.got))
				}
				if len(b) < 2 || (b[0] != 0x80 && string(b[:6]) != "\x93NUMPY") {
					t.Errorf("member %q starts %q, want a pickle or npy", tc.member, b[:min(len(b), 8)])
				}
			}
			want := slices.Clone(tc.rules)
			sort.Strings(want)
			if got := rules(file); !slices.Equal(got, want) {
				t.Errorf("findings = %q, want %q", got, want)
			}
			if len(file.Errors) != 0 {
				t.Errorf("errors: %v", file.Errors)
			}
			if got := len(file.Unscanned); got != tc.unscanned {
				t.Errorf("unscanned = %v, want %d", file.Unscanned, tc.unscanned)
			}
		})
	}
}

func flateWriter(w io.Writer) (*flate.Writer, error) {
	return flate.NewWriter(w, flate.BestCompression)
}

// fixRawSizes sets the compressed size of the single entry written with
// CreateRaw in both headers.
func fixRawSizes(t testing.TB, data []byte, comp uint64) []byte {
	l, c := headers(t, data, 0)
	binary.LittleEndian.PutUint32(data[l+18:], uint32(comp))
	binary.LittleEndian.PutUint32(data[c+20:], uint32(comp))
	return data
}

func FuzzScan(f *testing.F) {
	f.Add(build(f, entry{name: "a.pkl", data: pkl}, entry{name: "b", data: "hello hello hello", method: zip.Deflate}))
	f.Add(build(f, entry{name: "archive/data.pkl", data: pkl}, entry{name: "archive/data/0", data: "x"}, entry{name: "archive/version", data: "3\n"}))
	for _, dir := range []string{"../../testdata/picklescan/files/data", "../../testdata/picklescan/files/data2"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.zip"))
		npz, _ := filepath.Glob(filepath.Join(dir, "*.npz"))
		for _, m := range append(matches, npz...) {
			if b, err := os.ReadFile(m); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, p := run(t, data, scan.Limits{MaxExpanded: 1 << 20, SpillBytes: 1 << 20})
		var total int
		for _, b := range p.got {
			total += len(b)
		}
		if total > 1<<20 {
			t.Fatalf("scanned %d bytes past the 1 MiB budget", total)
		}
		_ = file
	})
}

// testPolicy builds the default policy once: parsing it per fuzz input
// would dominate the run.
var testPolicy = sync.OnceValue(policy.Default)
