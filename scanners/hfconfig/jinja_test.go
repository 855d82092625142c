package hfconfig

import (
	"context"
	"slices"
	"testing"

	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
)

func TestJinjaScanner(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		formats []string
		rules   []string
	}{
		{name: "benign Llama-3 template", data: llama3, formats: []string{"jinja-template"}},
		{name: "CVE-2024-34359 payload", data: "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('echo modelseal-harmless').read() }}",
			formats: []string{"jinja-template"}, rules: []string{chattemplate.Rule}},
		{name: "plain text", data: "hello world\n"},
		{name: "JSON object", data: `{"chat_template": "{{ x }}"}`},
		{name: "binary", data: "\x00\x01{{ x }}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := scan.ScanBytes(context.Background(), "chat_template.jinja", []byte(tt.data),
				scan.Options{Policy: testPolicy(), Scanners: []scan.Scanner{JinjaScanner{}}})
			if !slices.Equal(f.Formats, tt.formats) {
				t.Errorf("formats = %v, want %v", f.Formats, tt.formats)
			}
			got := slices.Compact(f.Rules())
			if !slices.Equal(got, tt.rules) {
				t.Errorf("rules = %v, want %v (%v)", got, tt.rules, f.Findings)
			}
			if tt.formats != nil && f.Metadata["jinja.chat_template.sha256"] != chattemplate.Sum(tt.data) {
				t.Errorf("sha256 metadata = %v", f.Metadata)
			}
		})
	}
}
