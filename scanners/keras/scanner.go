// Package keras scans Keras models without loading them: the JSON config of
// a .keras archive (config.json, and metadata.json for the version), a
// model.to_json() document, and the model_config attribute of a legacy
// HDF5 (.h5) model, which holds the same JSON. The checker walks the whole
// config tree and flags what makes keras.models.load_model run code: Lambda
// layers (marshalled Python bytecode or a function named by module, CVE-2024-3660,
// and CVE-2025-9905 for .h5, where safe_mode is ignored), TFOpLambda layers,
// objects whose module lies outside Keras (CVE-2025-1550: Keras imports the
// module and calls what class_name names), Keras functions that defeat
// safe_mode (CVE-2025-8747, CVE-2025-9906), custom registered objects and
// file paths in the config. Module and function names outside Keras are
// graded by the same policy as pickle globals.
//
// Other packages (scanners/tfsavedmodel for keras_metadata.pb) use CheckJSON
// and ReportConfig for configs they find inside their own formats.
package keras

import (
	"bytes"
	"context"
	"fmt"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Scanner is the scan.Scanner for Keras config JSON: a JSON object with a
// string class_name and a config (config.json of a .keras archive,
// model.to_json()), or a metadata.json with keras_version. Any other JSON
// is left to other scanners (scan.ErrNotFormat).
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "keras" }

// Match implements scan.Scanner: the stream starts, after an optional
// byte-order mark and white space, with '{' in any encoding Python's json
// module detects. The content decides in Scan.
func (Scanner) Match(head []byte, size int64) bool {
	t, _, _, _ := toUTF8(head)
	t = bytes.TrimLeft(t, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	if in.Size > MaxConfigSize {
		// Too big to be a model config; refuse rather than pass a Keras
		// config that hides behind its size.
		head := make([]byte, 1<<20)
		n, _ := in.R.ReadAt(head, 0)
		t, _, _, _ := toUTF8(head[:n])
		if bytes.Contains(t, []byte(`"class_name"`)) || bytes.Contains(t, []byte(`"keras_version"`)) {
			return &scan.FormatError{Format: "keras", Off: 0, Msg: fmt.Sprintf("JSON with Keras keys of %d bytes exceeds the %d-byte limit; not scanned", in.Size, MaxConfigSize)}
		}
		return scan.ErrNotFormat
	}
	buf := make([]byte, in.Size)
	if n, err := in.R.ReadAt(buf, 0); n < len(buf) {
		return fmt.Errorf("keras: reading %d bytes: %w", in.Size, err)
	}
	text, skip, enc, _ := toUTF8(buf)
	strs, keys, isObject, err := skimTop(text)
	if !isObject {
		return scan.ErrNotFormat
	}
	if err != nil {
		if bytes.Contains(text, []byte(`"class_name"`)) {
			// Looks like Keras but Python's json would refuse it (or our
			// reader disagrees with it): never pass it silently.
			return &scan.FormatError{Format: "keras", Off: offIn(err, skip, enc), Msg: "config is not valid JSON: " + err.Error()}
		}
		return scan.ErrNotFormat
	}
	_, hasClass := strs["class_name"]
	_, hasConfig := keys["config"]
	switch {
	case hasClass && hasConfig:
	case keys["keras_version"] == kString:
		env.SetMeta(in, "keras.version", strs["keras_version"])
		if d, ok := strs["date_saved"]; ok {
			env.SetMeta(in, "keras.date_saved", d)
		}
		return nil
	default:
		return scan.ErrNotFormat
	}
	cfg, err := CheckJSON(buf, env.Policy)
	if err != nil {
		return &scan.FormatError{Format: "keras", Off: offIn(err, skip, enc), Msg: err.Error()}
	}
	base := int64(skip)
	if enc != "utf-8" && enc != "utf-8-sig" {
		base = -1 // offsets in transcoded text do not map back
	}
	ReportConfig(env, in, cfg, base)
	return nil
}

func offIn(err error, skip int, enc string) int64 {
	if je, ok := err.(*jsonError); ok && (enc == "utf-8" || enc == "utf-8-sig") {
		return je.off + int64(skip)
	}
	return -1
}

// ReportConfig reports a checked config's hits on in and records its
// metadata (keras.class_name, keras.layers, keras.version, keras.backend).
// base is the stream offset of the JSON text, or -1 when offsets inside it
// do not map to the stream.
func ReportConfig(env *scan.Env, in scan.Input, cfg *Config, base int64) {
	for _, h := range cfg.Hits {
		off := int64(-1)
		if base >= 0 && h.Off >= 0 {
			off = base + h.Off
		}
		env.Report(finding.Finding{Rule: h.Rule, Severity: h.Severity, Location: in.At(off), Message: h.Message, Global: h.Global, Evidence: h.Evidence})
	}
	if cfg.Truncated > 0 {
		env.Report(finding.Finding{Rule: RuleTruncated, Severity: finding.Info, Location: in.At(base),
			Message: fmt.Sprintf("%d more Keras findings not listed", cfg.Truncated)})
	}
	if cfg.ClassName != "" {
		env.SetMeta(in, "keras.class_name", cfg.ClassName)
	}
	env.SetMeta(in, "keras.layers", cfg.Layers)
	if cfg.KerasVersion != "" {
		env.SetMeta(in, "keras.version", cfg.KerasVersion)
	}
	if cfg.Backend != "" {
		env.SetMeta(in, "keras.backend", cfg.Backend)
	}
}
