package safetensors_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/all"
)

// TestFixtures scans fixtures/safetensors (made by its make_fixtures.go)
// with the whole registry.
func TestFixtures(t *testing.T) {
	tests := []struct {
		path   string
		format string
		rules  []string
		maxSev finding.Severity
	}{
		{path: "benign/tiny.safetensors", format: "safetensors"},
		{path: "benign/sharded/model-00001-of-00002.safetensors", format: "safetensors"},
		{path: "benign/sharded/model.safetensors.index.json", format: "safetensors-index"},
		{path: "malicious/duplicate_key.safetensors", format: "safetensors", rules: []string{"safetensors/duplicate-key", "safetensors/trailing-data"}, maxSev: finding.Medium},
		{path: "malicious/overlapping_tensors.safetensors", format: "safetensors", rules: []string{"safetensors/invalid-header"}, maxSev: finding.Medium},
		{path: "malicious/trailing_pickle_harmless.safetensors", format: "safetensors", rules: []string{"pickle/dangerous-global", "safetensors/trailing-data"}, maxSev: finding.Critical},
		{path: "malicious/index_traversal/model.safetensors.index.json", format: "safetensors-index", rules: []string{"safetensors/index-unsafe-path"}, maxSev: finding.High},
	}
	opts := scan.Options{Scanners: all.Scanners(), Policy: policy.Default()}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p := filepath.Join("..", "..", "fixtures", "safetensors", filepath.FromSlash(tt.path))
			f := scan.ScanFile(context.Background(), p, p, opts)
			var rules []string
			sev := finding.Info
			for _, x := range f.Findings {
				if !slices.Contains(rules, x.Rule) {
					rules = append(rules, x.Rule)
				}
				sev = max(sev, x.Severity)
			}
			slices.Sort(rules)
			if !slices.Equal(rules, tt.rules) || sev != tt.maxSev || len(f.Errors) != 0 || !slices.Contains(f.Formats, tt.format) {
				t.Errorf("formats %v rules %v (want %v) severity %v (want %v) errors %v", f.Formats, rules, tt.rules, sev, tt.maxSev, f.Errors)
			}
		})
	}
}
