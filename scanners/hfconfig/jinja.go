package hfconfig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
)

// MaxTemplateSize bounds a standalone template file read into memory.
const MaxTemplateSize = 4 << 20

// JinjaScanner is the scan.Scanner for standalone Jinja chat templates
// (chat_template.jinja, which transformers writes beside
// tokenizer_config.json, and any other text file with Jinja tags): text
// that contains "{{" or "{%" in its first bytes. It runs the same checks
// as the templates inside GGUF and tokenizer_config.json. Register it after
// every binary and JSON format.
type JinjaScanner struct{}

// Format implements scan.Scanner.
func (JinjaScanner) Format() string { return "jinja-template" }

// Match implements scan.Scanner: UTF-8 text with a Jinja tag in the head.
func (JinjaScanner) Match(head []byte, size int64) bool {
	if size > MaxTemplateSize || len(head) == 0 || bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	t := bytes.TrimLeft(head, " \t\r\n\ufeff")
	if len(t) > 0 && (t[0] == '{' && len(t) > 1 && (t[1] == '"' || t[1] == '\n' || t[1] == ' ')) {
		return false // a JSON object: hfconfig's Scanner reads it
	}
	if !utf8.Valid(trimPartialRune(head)) {
		return false
	}
	return bytes.Contains(head, []byte("{{")) || bytes.Contains(head, []byte("{%"))
}

// trimPartialRune drops an incomplete UTF-8 sequence cut off at the end of
// the head.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// Scan implements scan.Scanner.
func (JinjaScanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	data, err := io.ReadAll(io.NewSectionReader(in.R, 0, min(in.Size, MaxTemplateSize)))
	if err != nil {
		return fmt.Errorf("reading template: %w", err)
	}
	if !utf8.Valid(data) {
		return scan.ErrNotFormat
	}
	sum := chattemplate.Report(env, in, 0, in.Name, string(data))
	env.SetMeta(in, "jinja.chat_template.sha256", sum)
	return nil
}
