package safetensors

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Rule ids this package reports.
const (
	RuleInvalidHeader = "safetensors/invalid-header"
	RuleDuplicateKey  = "safetensors/duplicate-key"
	RuleUnknownField  = "safetensors/unknown-field"
	RuleTrailingData  = "safetensors/trailing-data"
)

// TrailingMember names the bytes after the tensor buffer when they are
// handed back to the registry as a member.
const TrailingMember = "(trailing data)"

// Scanner is the scan.Scanner for .safetensors files.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "safetensors" }

// Match implements scan.Scanner: a header length within the limit and the
// file, followed by '{'.
func (Scanner) Match(head []byte, size int64) bool {
	if len(head) < 9 || size < 10 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && n <= MaxHeaderSize && int64(n) <= size-8 && head[8] == '{'
}

// Scan implements scan.Scanner. It reads the header only, whatever the
// file's size; bytes after the tensor buffer are scanned as a member.
func (s Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	h, err := ReadHeader(in.R, in.Size)
	if err != nil {
		return err
	}
	report(in, env, h)
	env.SetMeta(in, "safetensors.tensors", len(h.Tensors))
	env.SetMeta(in, "safetensors.parameters", h.Parameters)
	env.SetMeta(in, "safetensors.dtypes", h.DTypes())
	if h.Metadata != nil {
		env.SetMeta(in, "safetensors.metadata", h.Metadata)
	}
	dataStart := 8 + h.Len
	avail := uint64(in.Size - dataStart)
	switch {
	case h.BufferEnd > avail:
		env.Report(finding.Finding{Rule: RuleInvalidHeader, Severity: finding.Medium, Location: in.At(dataStart),
			Message:  fmt.Sprintf("tensor data runs to buffer offset %d, past the end of the file (%d bytes of buffer): truncated or forged header", h.BufferEnd, avail),
			Evidence: map[string]string{"buffer_end": strconv.FormatUint(h.BufferEnd, 10), "buffer_size": strconv.FormatUint(avail, 10)}})
	case h.BufferEnd < avail:
		start := dataStart + int64(h.BufferEnd)
		n := in.Size - start
		env.Report(finding.Finding{Rule: RuleTrailingData, Severity: finding.Medium, Location: in.At(start),
			Message:  fmt.Sprintf("%d bytes after the last tensor: loaders refuse the file, and the bytes may be a second file (polyglot); they are scanned as a member", n),
			Evidence: map[string]string{"trailing_bytes": strconv.FormatInt(n, 10)}})
		return env.Member(ctx, in, TrailingMember, io.NewSectionReader(in.R, start, n), n, 0)
	}
	return nil
}

func report(in scan.Input, env *scan.Env, h *Header) {
	for _, p := range h.Problems {
		rule, sev := RuleInvalidHeader, finding.Medium
		switch p.Kind {
		case "duplicate-key":
			rule = RuleDuplicateKey
		case "unknown-field":
			rule, sev = RuleUnknownField, finding.Low
		}
		env.Report(finding.Finding{Rule: rule, Severity: sev, Location: in.At(p.Off), Message: p.Msg})
	}
	if h.Truncated > 0 {
		env.Report(finding.Finding{Rule: RuleInvalidHeader, Severity: finding.Medium, Location: in.At(8),
			Message: fmt.Sprintf("%d more header problems not listed", h.Truncated)})
	}
}
