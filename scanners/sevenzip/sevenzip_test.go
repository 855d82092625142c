package sevenzip

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

var testPolicy = sync.OnceValue(policy.Default)

// probe records members that start with "PROBE".
type probe struct{ got map[string]string }

func (p *probe) Format() string                  { return "probe" }
func (p *probe) Match(head []byte, _ int64) bool { return bytes.HasPrefix(head, []byte("PROBE")) }
func (p *probe) Scan(_ context.Context, in scan.Input, _ *scan.Env) error {
	b, _ := io.ReadAll(io.NewSectionReader(in.R, 0, in.Size))
	p.got[in.Loc.Member()] = string(b)
	return nil
}

func run(t testing.TB, data []byte, limits scan.Limits) (*scan.File, *probe) {
	t.Helper()
	p := &probe{got: map[string]string{}}
	file := &scan.File{Path: "t.7z"}
	env := scan.NewEnv(testPolicy(), limits, []scan.Scanner{New(), p, pickle.Scanner{}}, file)
	if err := env.Dispatch(context.Background(), scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "t.7z", Offset: -1}, Name: "t.7z"}); err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return file, p
}

func rules(f *scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		out = append(out, x.Rule+" "+x.Location.Member())
	}
	sort.Strings(out)
	return out
}

func TestScan(t *testing.T) {
	tests := []struct {
		file      string
		limits    scan.Limits
		rules     []string
		probe     map[string]string
		errors    int
		unscanned int
	}{
		{file: "plain.7z", rules: []string{"pickle/dangerous-global evil.pkl"}, probe: map[string]string{"probe.txt": "PROBE hello", "d/inner.bin": "PROBE nested"}},
		{file: "copy.7z", rules: []string{"pickle/dangerous-global evil.pkl"}, probe: map[string]string{"probe.txt": "PROBE hello"}},
		// The AES data decrypts to noise with no password: the noise is offered
		// to the registry (unknown format), then the member is reported.
		{file: "encrypted.7z", rules: []string{"archive/encrypted evil.pkl"}, unscanned: 2},
		{file: "encrypted_headers.7z", rules: []string{"archive/encrypted "}, unscanned: 1},
		{file: "plain.7z", limits: scan.Limits{MaxExpanded: 20}, rules: []string{"archive/expansion-limit evil.pkl", "archive/expansion-limit probe.txt"}, probe: map[string]string{"d/inner.bin": "PROBE nested"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			file, p := run(t, data, tc.limits)
			if got := rules(file); !slices.Equal(got, tc.rules) {
				t.Errorf("rules = %q, want %q", got, tc.rules)
			}
			for k, v := range tc.probe {
				if p.got[k] != v {
					t.Errorf("member %q = %q, want %q (got %q)", k, p.got[k], v, p.got)
				}
			}
			if len(p.got) != len(tc.probe) {
				t.Errorf("probed %q, want %q", p.got, tc.probe)
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

func TestCorruptKeepsPrefix(t *testing.T) {
	data, err := os.ReadFile("testdata/copy.7z")
	if err != nil {
		t.Fatal(err)
	}
	data = slices.Clone(data)
	i := bytes.Index(data, []byte("eval"))
	data[i] = 'E' // stored data no longer matches its CRC
	file, _ := run(t, data, scan.Limits{})
	if len(file.Errors) == 0 && len(file.Findings) == 0 {
		t.Errorf("a corrupted archive produced neither an error nor a finding")
	}
}

func TestCorpus(t *testing.T) {
	paths := []string{"../../testdata/picklescan/files/data/malicious1.7z", "../../fixtures/malicious/sevenzip_payload_harmless.7z"}
	n := 0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			file, _ := run(t, data, scan.Limits{})
			var dangerous bool
			for _, f := range file.Findings {
				dangerous = dangerous || f.Rule == "pickle/dangerous-global"
			}
			if !dangerous {
				t.Errorf("no dangerous global: %v %v", file.Findings, file.Errors)
			}
		})
	}
	if n == 0 {
		t.Fatal("the committed corpus is missing")
	}
}

func FuzzScan(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.7z")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run(t, data, scan.Limits{MaxExpanded: 4 << 20, SpillBytes: 1 << 20})
	})
}
