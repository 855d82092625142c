package hfconfig

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
)

var testPolicy = sync.OnceValue(policy.Default)

func run(t testing.TB, data []byte) scan.File {
	t.Helper()
	return scan.ScanBytes(context.Background(), "tokenizer_config.json", data, scan.Options{Policy: testPolicy(), Scanners: []scan.Scanner{Scanner{}}})
}

const llama3 = `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`

const hostile = `{{ self.__init__.__globals__.__builtins__.__import__('os').popen('echo modelseal-harmless').read() }}`

func config(tpl any) []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"added_tokens_decoder": map[string]any{"128000": map[string]any{"content": "<|begin_of_text|>", "special": true}},
		"bos_token":            "<|begin_of_text|>",
		"chat_template":        tpl,
		"model_max_length":     131072,
		"tokenizer_class":      "PreTrainedTokenizerFast",
	}, "", "  ")
	return b
}

func TestScan(t *testing.T) {
	tests := []struct {
		name      string
		data      []byte
		maxSev    finding.Severity
		findings  int
		meta      []string
		unscanned int
	}{
		{name: "benign string template", data: config(llama3), meta: []string{"hfconfig.chat_template.sha256"}},
		{name: "benign named templates", data: config([]map[string]string{{"name": "default", "template": llama3}, {"name": "tool_use", "template": llama3}}),
			meta: []string{"hfconfig.chat_template.default.sha256", "hfconfig.chat_template.tool_use.sha256"}},
		{name: "hostile", data: config(hostile), maxSev: finding.Critical, findings: 7, meta: []string{"hfconfig.chat_template.sha256"}},
		{name: "hostile named", data: config([]map[string]string{{"name": "default", "template": llama3}, {"name": "rag", "template": hostile}}),
			maxSev: finding.Critical, findings: 7, meta: []string{"hfconfig.chat_template.default.sha256", "hfconfig.chat_template.rag.sha256"}},
		{name: "duplicate key", data: []byte(`{"chat_template": "{{ 1 }}", "chat_template": "{{ 2 }}"}`), maxSev: finding.Medium, findings: 1,
			meta: []string{"hfconfig.chat_template.sha256"}},
		{name: "config without template", data: []byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}`), unscanned: 1},
		{name: "not JSON", data: []byte(`{"chat_template": `), unscanned: 1},
		{name: "null template", data: []byte(`{"chat_template": null}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, tt.data)
			sev := finding.Info
			for _, x := range f.Findings {
				sev = max(sev, x.Severity)
			}
			if sev != tt.maxSev || len(f.Findings) != tt.findings {
				t.Errorf("max severity %v (want %v), %d findings (want %d): %v", sev, tt.maxSev, len(f.Findings), tt.findings, f.Findings)
			}
			var keys []string
			for k := range f.Metadata {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.meta) {
				t.Errorf("metadata keys %v, want %v", keys, tt.meta)
			}
			if len(f.Unscanned) != tt.unscanned || len(f.Errors) != 0 {
				t.Errorf("unscanned %v errors %v", f.Unscanned, f.Errors)
			}
		})
	}
	f := run(t, config(hostile))
	if f.Metadata["hfconfig.chat_template.sha256"] != chattemplate.Sum(hostile) || f.Findings[0].Evidence["sha256"] != chattemplate.Sum(hostile) {
		t.Errorf("sha256 not recorded: %v %v", f.Metadata, f.Findings[0].Evidence)
	}
}

func FuzzTemplates(f *testing.F) {
	f.Add(config(llama3))
	f.Add(config([]map[string]string{{"name": "rag", "template": hostile}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = Templates(data)
	})
}
