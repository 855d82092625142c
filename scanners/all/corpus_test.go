package all

import (
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
)

// corpusLabels is the part of testdata/picklescan/labels.json the test reads.
type corpusLabels struct {
	Files []struct {
		Path     string `json:"path"`
		Verdict  string `json:"verdict"`
		Expected struct {
			Globals []struct {
				Module string `json:"module"`
				Name   string `json:"name"`
				Safety string `json:"safety"`
			} `json:"globals"`
		} `json:"expected"`
	} `json:"files"`
}

// TestPicklescanCorpus scans every file of picklescan's labelled test corpus:
// each malicious sample must fail the default threshold and name every
// global picklescan calls dangerous; each benign one must pass.
func TestPicklescanCorpus(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "picklescan")
	raw, err := os.ReadFile(filepath.Join(root, "labels.json"))
	if err != nil {
		t.Fatalf("corpus labels: %v", err)
	}
	var labels corpusLabels
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatalf("corpus labels: %v", err)
	}
	opts := scan.Options{Scanners: Scanners(), Policy: policy.Default()}
	var blocked, malicious, passed, benign int
	for _, l := range labels.Files {
		t.Run(l.Path, func(t *testing.T) {
			path := filepath.Join(root, "files", filepath.FromSlash(l.Path))
			f := scan.ScanFile(context.Background(), l.Path, path, opts)
			res := &scan.Result{Files: []scan.File{f}}
			code := res.ExitCode(finding.Medium)
			var got []string
			for _, x := range f.Findings {
				got = append(got, policy.Canonical(x.Global))
			}
			switch l.Verdict {
			case "malicious":
				malicious++
				if code != scan.ExitFindings {
					t.Errorf("malicious sample not blocked (exit %d): findings %v errors %v unscanned %v", code, f.Findings, f.Errors, f.Unscanned)
					return
				}
				for _, g := range l.Expected.Globals {
					want := policy.Canonical(g.Module + "." + g.Name)
					// picklescan's pseudo-globals for unresolved names have no
					// real name to match; the unresolved finding stands in.
					if g.Safety != "dangerous" || strings.Contains(want, "unknown") {
						continue
					}
					if !slices.Contains(got, want) {
						t.Errorf("dangerous global %s not reported; got %v", want, got)
					}
				}
				blocked++
			case "benign":
				benign++
				if code != scan.ExitClean {
					t.Errorf("benign sample fails (exit %d): findings %v errors %v", code, f.Findings, f.Errors)
					return
				}
				passed++
			default:
				t.Fatalf("unknown verdict %q", l.Verdict)
			}
		})
	}
	t.Logf("picklescan corpus: %d/%d malicious blocked, %d/%d benign passed", blocked, malicious, passed, benign)
	if malicious+benign != len(labels.Files) || malicious == 0 || benign == 0 {
		t.Fatalf("corpus incomplete: %d malicious, %d benign of %d files", malicious, benign, len(labels.Files))
	}
}
