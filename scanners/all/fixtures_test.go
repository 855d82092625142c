package all

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/report"
	"github.com/modelseal/modelseal/pkg/scan"
)

// fixtureLabel is one entry of fixtures/labels.json.
type fixtureLabel struct {
	Path    string   `json:"path"`
	Verdict string   `json:"verdict"`
	Format  string   `json:"format"`
	Globals []string `json:"globals"`
	Rules   []string `json:"rules"`
	Imports []string `json:"imports"`
}

// TestFixtures scans the real-library and hand-built fixtures: every
// malicious one is blocked at the default threshold with its dangerous
// globals and rules named; every benign one (written by torch, numpy,
// sklearn, joblib) passes with no error.
func TestFixtures(t *testing.T) {
	root := filepath.Join("..", "..", "fixtures")
	raw, err := os.ReadFile(filepath.Join(root, "labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels []fixtureLabel
	if err := json.Unmarshal(raw, &labels); err != nil {
		t.Fatal(err)
	}
	opts := scan.Options{Scanners: Scanners(), Policy: policy.Default()}
	var blocked, malicious, passed, benign int
	for _, l := range labels {
		t.Run(l.Path, func(t *testing.T) {
			f := scan.ScanFile(context.Background(), l.Path, filepath.Join(root, filepath.FromSlash(l.Path)), opts)
			code := (&scan.Result{Files: []scan.File{f}}).ExitCode(finding.Medium)
			var globals, rules []string
			for _, x := range f.Findings {
				globals = append(globals, policy.Canonical(x.Global))
				rules = append(rules, x.Rule)
				if report.RuleDescription(x.Rule) == "" {
					t.Errorf("rule %s is not documented in pkg/report/rules.go", x.Rule)
				}
			}
			switch l.Verdict {
			case "malicious":
				malicious++
				if code != scan.ExitFindings {
					t.Errorf("not blocked (exit %d): findings %v errors %v unscanned %v", code, f.Findings, f.Errors, f.Unscanned)
					return
				}
				for _, g := range l.Globals {
					if !slices.Contains(globals, policy.Canonical(g)) {
						t.Errorf("global %s not reported; findings %v", g, f.Findings)
					}
				}
				for _, r := range l.Rules {
					if !slices.Contains(rules, r) {
						t.Errorf("rule %s not reported; findings %v", r, f.Findings)
					}
				}
				blocked++
			case "benign":
				benign++
				if code != scan.ExitClean || len(f.Errors) > 0 {
					t.Errorf("benign fixture fails (exit %d): findings %v errors %v", code, f.Findings, f.Errors)
					return
				}
				if len(f.Formats) == 0 {
					t.Errorf("benign fixture not recognised: unscanned %v", f.Unscanned)
					return
				}
				passed++
			}
		})
	}
	t.Logf("fixtures: %d/%d malicious blocked, %d/%d benign passed", blocked, malicious, passed, benign)
}
