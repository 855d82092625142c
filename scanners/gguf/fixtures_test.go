package gguf_test

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

// TestFixtures scans fixtures/gguf (made by its make_fixtures.go) with the
// whole registry.
func TestFixtures(t *testing.T) {
	tests := []struct {
		path   string
		format string
		rules  []string
		maxSev finding.Severity
		errors int
	}{
		{path: "benign/tiny_llama.gguf", format: "gguf", rules: []string{"chat-template/injection"}},
		{path: "benign/tokenizer_config.json", format: "hf-chat-template-config", rules: []string{"chat-template/injection"}},
		{path: "malicious/chat_template_ssti_harmless.gguf", format: "gguf", rules: []string{"chat-template/injection"}, maxSev: finding.Critical},
		{path: "malicious/tokenizer_config_ssti_harmless.json", format: "hf-chat-template-config", rules: []string{"chat-template/injection"}, maxSev: finding.Critical},
		{path: "malicious/overlapping_tensors.gguf", format: "gguf", rules: []string{"chat-template/injection", "gguf/invalid-tensor"}, maxSev: finding.Medium},
		{path: "malicious/kv_count_overflow.gguf", format: "gguf", errors: 1},
	}
	opts := scan.Options{Scanners: all.Scanners(), Policy: policy.Default()}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p := filepath.Join("..", "..", "fixtures", "gguf", filepath.FromSlash(tt.path))
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
			if !slices.Equal(rules, tt.rules) || sev != tt.maxSev || len(f.Errors) != tt.errors || !slices.Equal(f.Formats, []string{tt.format}) {
				t.Errorf("formats %v rules %v (want %v) severity %v (want %v) errors %v", f.Formats, rules, tt.rules, sev, tt.maxSev, f.Errors)
			}
		})
	}
}
