// Package hfconfig scans Hugging Face JSON configuration files that carry a
// chat template (tokenizer_config.json, chat_template.json): the template,
// a string or a list of named templates, is checked for server-side
// template injection and its sha256 recorded.
package hfconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
)

// MaxSize bounds the JSON files read into memory.
const MaxSize = 64 << 20

// RuleDuplicateKey is reported when chat_template appears twice.
const RuleDuplicateKey = "hfconfig/duplicate-key"

// Scanner is the scan.Scanner for JSON objects with a "chat_template" key.
// It matches any JSON object and steps aside (scan.ErrNotFormat) when the
// object has no chat template, so register it after more specific JSON
// formats.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "hf-chat-template-config" }

// Match implements scan.Scanner: a stream that starts with '{'.
func (Scanner) Match(head []byte, size int64) bool {
	t := bytes.TrimLeft(head, " \t\r\n\ufeff")
	return size <= MaxSize && len(t) > 0 && t[0] == '{'
}

// Template is one chat template of a config file.
type Template struct {
	// Name is "" for the default template, else the template's name.
	Name string
	Text string
	// At is the file offset of the JSON value holding the template.
	At int64
}

// Templates reads the chat templates of a JSON object. It returns
// scan.ErrNotFormat when data is not a JSON object or has no chat_template,
// and whether chat_template appears more than once.
func Templates(data []byte) (tpls []Template, dup bool, err error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	d := json.NewDecoder(bytes.NewReader(data))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, false, scan.ErrNotFormat
	}
	found := false
	for d.More() {
		kt, err := d.Token()
		if err != nil {
			return nil, false, scan.ErrNotFormat
		}
		at := d.InputOffset()
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, false, scan.ErrNotFormat
		}
		if kt != "chat_template" {
			continue
		}
		if found {
			dup = true
		}
		found = true
		if string(raw) == "null" {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			tpls = append(tpls, Template{Text: s, At: at})
			continue
		}
		var list []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, dup, &scan.FormatError{Format: "hf-chat-template-config", Off: at, Msg: "chat_template is neither a string nor a list of {name, template}"}
		}
		for _, e := range list {
			tpls = append(tpls, Template{Name: e.Name, Text: e.Template, At: at})
		}
	}
	if _, err := d.Token(); err != nil || !found {
		return nil, false, scan.ErrNotFormat
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, false, scan.ErrNotFormat
	}
	return tpls, dup, nil
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	if in.Size > MaxSize {
		return scan.ErrNotFormat
	}
	data := make([]byte, in.Size)
	if _, err := in.R.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hf-chat-template-config: reading: %w", err)
	}
	tpls, dup, err := Templates(data)
	if err != nil {
		return err
	}
	if dup {
		env.Report(finding.Finding{Rule: RuleDuplicateKey, Severity: finding.Medium, Location: in.At(-1),
			Message: "chat_template appears twice in the JSON object; parsers disagree on which one counts (both are checked)"})
	}
	for _, t := range tpls {
		source, key := "chat_template", "hfconfig.chat_template.sha256"
		if t.Name != "" {
			source += "[" + t.Name + "]"
			key = "hfconfig.chat_template." + t.Name + ".sha256"
		}
		sum := chattemplate.Report(env, in, -1, source, t.Text)
		env.SetMeta(in, key, sum)
	}
	return nil
}
