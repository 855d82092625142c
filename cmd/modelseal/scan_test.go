package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hand-built pickles with harmless payloads; never loaded.
var (
	harmlessSystem = []byte("cposix\nsystem\n(S'echo modelseal-harmless'\ntR.")
	unknownClass   = []byte("\x80\x02cmylib.models\nNet\n)\x81.")
	benignList     = []byte("\x80\x04]\x94(K\x01K\x02e.")
)

func writeFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestScanExitCodes(t *testing.T) {
	dir := writeFiles(t, map[string][]byte{
		"evil-harmless.bin": harmlessSystem,
		"model/weights":     benignList,
		"custom.pkl":        unknownClass,
	})
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte("allow:\n  - {global: mylib.models.Net, reason: our model}\n"), 0o644)
	badPolicy := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badPolicy, []byte("allow: [{global: x, colour: red}]\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout or stderr
	}{
		{"malicious folder", []string{"scan", dir}, 1, "os.system"},
		{"benign file", []string{"scan", filepath.Join(dir, "model/weights")}, 0, "Verdict at --fail-on medium: PASS"},
		{"unknown global blocks at medium", []string{"scan", filepath.Join(dir, "custom.pkl")}, 1, "mylib.models.Net"},
		{"unknown global passes at high", []string{"scan", "--fail-on", "high", filepath.Join(dir, "custom.pkl")}, 0, "PASS"},
		{"policy allows it", []string{"scan", "--policy", policyFile, filepath.Join(dir, "custom.pkl")}, 0, "PASS"},
		{"policy with a typo", []string{"scan", "--policy", badPolicy, dir}, 3, "colour"},
		{"missing policy", []string{"scan", "--policy", "/nonexistent.yaml", dir}, 3, "nonexistent"},
		{"bad threshold", []string{"scan", "--fail-on", "severe", dir}, 3, "severe"},
		{"bad format", []string{"scan", "--format", "xml", dir}, 3, "xml"},
		{"missing file", []string{"scan", filepath.Join(dir, "nope")}, 2, "no such file"},
		{"no arguments", []string{"scan"}, 3, "requires at least 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errs)
			}
			if !strings.Contains(out+errs, tt.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tt.want, out, errs)
			}
		})
	}
}

func TestScanJSONAndOutputFile(t *testing.T) {
	dir := writeFiles(t, map[string][]byte{"a.pkl": harmlessSystem, "b.pkl": benignList})
	out := filepath.Join(t.TempDir(), "report.json")
	code, stdout, _ := runCLI("scan", "--format", "json", "--output", out, dir)
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d stdout %q", code, stdout)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Schema   string `json:"schema"`
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
		Summary  struct {
			Files    int            `json:"files"`
			Findings map[string]int `json:"findings"`
		} `json:"summary"`
		Files []struct {
			Path     string   `json:"path"`
			Formats  []string `json:"formats"`
			Findings []struct {
				Rule     string `json:"rule"`
				Severity string `json:"severity"`
				Global   string `json:"global"`
				Location struct {
					Path   string `json:"path"`
					Offset int64  `json:"offset"`
				} `json:"location"`
			} `json:"findings"`
		} `json:"files"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	if rep.Schema != "modelseal.scan/v1" || rep.Verdict != "fail" || rep.ExitCode != 1 || rep.Summary.Files != 2 || rep.Summary.Findings["critical"] != 1 {
		t.Fatalf("report: %+v", rep)
	}
	f := rep.Files[0]
	if !strings.HasSuffix(f.Path, "a.pkl") || f.Formats[0] != "pickle" || f.Findings[0].Global != "os.system" ||
		f.Findings[0].Severity != "critical" || f.Findings[0].Rule != "pickle/dangerous-global" || f.Findings[0].Location.Offset != 0 {
		t.Fatalf("file entry: %+v", f)
	}
	// No temporary file is left beside the report.
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
}

func TestScanSARIF(t *testing.T) {
	dir := writeFiles(t, map[string][]byte{"a.pkl": harmlessSystem, "c.pkl": unknownClass})
	code, out, _ := runCLI("scan", "--format", "sarif", dir)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var log struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID         string         `json:"id"`
						Properties map[string]any `json:"properties"`
						Default    struct {
							Level string `json:"level"`
						} `json:"defaultConfiguration"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					Physical struct {
						Artifact struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				Fingerprints map[string]string `json:"partialFingerprints"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif") || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "modelseal" {
		t.Fatalf("sarif header: %+v", log)
	}
	run := log.Runs[0]
	if len(run.Results) != 2 {
		t.Fatalf("results: %+v", run.Results)
	}
	levels := map[string]string{}
	for _, r := range run.Results {
		rule := run.Tool.Driver.Rules[r.RuleIndex]
		if rule.ID != r.RuleID || rule.Properties["security-severity"] == nil || r.Message.Text == "" || len(r.Fingerprints) == 0 {
			t.Errorf("result %+v does not match its rule %+v", r, rule)
		}
		uri := r.Locations[0].Physical.Artifact.URI
		if strings.Contains(uri, "\\") || uri == "" {
			t.Errorf("bad uri %q", uri)
		}
		levels[r.RuleID] = r.Level
	}
	if levels["pickle/dangerous-global"] != "error" || levels["pickle/unsafe-global"] != "warning" {
		t.Errorf("levels: %v", levels)
	}
}

// TestSARIFMemberLocation checks that a finding inside an archive names the
// archive as the artifact and the member path as a logical location.
func TestSARIFMemberLocation(t *testing.T) {
	code, out, _ := runCLI("scan", "--format", "sarif", "../../fixtures/malicious/torch_zip_data_pkl_harmless.pt")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var log struct {
		Runs []struct {
			Results []struct {
				Locations []struct {
					Physical struct {
						Artifact struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
					Logical []struct {
						FullyQualifiedName string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range log.Runs[0].Results {
		l := r.Locations[0]
		if l.Physical.Artifact.URI != "../../fixtures/malicious/torch_zip_data_pkl_harmless.pt" {
			t.Errorf("uri %q", l.Physical.Artifact.URI)
		}
		for _, lg := range l.Logical {
			if strings.HasSuffix(lg.FullyQualifiedName, "torch_zip_data_pkl_harmless.pt!archive/data.pkl") {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no logical location names the member: %s", out)
	}
}
