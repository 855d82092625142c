package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
)

// Limits bound the work of one top-level file, including everything nested
// in it. Zero fields take the defaults of DefaultLimits.
type Limits struct {
	// MaxDepth is how deep containers may nest (a zip in a tar is depth 2).
	MaxDepth int
	// MaxMembers is how many members one file may expand to.
	MaxMembers int
	// MaxExpanded is how many decompressed bytes one file may expand to.
	MaxExpanded int64
	// MaxRatio is the largest expanded/compressed ratio a member may have.
	MaxRatio int64
	// MaxPickleDepth bounds nested pickles (bytes handed to pickle.loads).
	MaxPickleDepth int
	// SpillBytes is how much of a streamed member is held in memory before
	// it is spilled to a temporary file.
	SpillBytes int64
}

// DefaultLimits are generous enough for real models and small enough to stop
// a decompression bomb.
var DefaultLimits = Limits{
	MaxDepth:       8,
	MaxMembers:     100_000,
	MaxExpanded:    64 << 30,
	MaxRatio:       1000,
	MaxPickleDepth: 4,
	SpillBytes:     64 << 20,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxMembers > 0 {
		d.MaxMembers = l.MaxMembers
	}
	if l.MaxExpanded > 0 {
		d.MaxExpanded = l.MaxExpanded
	}
	if l.MaxRatio > 0 {
		d.MaxRatio = l.MaxRatio
	}
	if l.MaxPickleDepth > 0 {
		d.MaxPickleDepth = l.MaxPickleDepth
	}
	if l.SpillBytes > 0 {
		d.SpillBytes = l.SpillBytes
	}
	return d
}

// Env is what a scanner sees of the run while it scans one top-level file:
// where to report, the policy, the limits, and the way back into the
// registry for container members. One Env serves one file at a time.
type Env struct {
	// Policy judges Python globals and rule severities.
	Policy *policy.Policy
	// Limits bound the file's expansion.
	Limits Limits

	scanners []Scanner
	file     *File
	members  int
	expanded int64
	// memberLimitHit is set once the member limit has been reported.
	memberLimitHit bool
}

// Exhausted reports whether the file's member or byte budget is spent, so
// that a container can stop walking its members early.
func (e *Env) Exhausted() bool {
	return e.members >= e.Limits.MaxMembers || e.expanded >= e.Limits.MaxExpanded
}

// NewEnv returns an Env that records into file. Scanners come in the order
// they are tried; the first whose Match and Scan accept a stream wins.
func NewEnv(p *policy.Policy, limits Limits, scanners []Scanner, file *File) *Env {
	if p == nil {
		p = policy.Default()
	}
	return &Env{Policy: p, Limits: limits.withDefaults(), scanners: scanners, file: file}
}

// Report records a finding after the policy's rule overrides.
func (e *Env) Report(f finding.Finding) {
	if e.Policy.Apply(&f) {
		e.file.Findings = append(e.file.Findings, f)
	}
}

// Fail records that a stream (or part of one) could not be scanned.
func (e *Env) Fail(loc finding.Location, err error) {
	e.file.Errors = append(e.file.Errors, Problem{Location: loc, Message: err.Error()})
}

// Skip records a stream that was deliberately not scanned and why (unknown
// format, encrypted member).
func (e *Env) Skip(loc finding.Location, why string) {
	e.file.Unscanned = append(e.file.Unscanned, Problem{Location: loc, Message: why})
}

// Noted records a format seen in the file (for reports and the BOM).
func (e *Env) Noted(format string) {
	for _, f := range e.file.Formats {
		if f == format {
			return
		}
	}
	e.file.Formats = append(e.file.Formats, format)
}

// SetMeta records a fact about the stream in for the file's Metadata. For
// a member of a container the key is prefixed with the member path and ":".
func (e *Env) SetMeta(in Input, key string, v any) {
	if e.file.Metadata == nil {
		e.file.Metadata = map[string]any{}
	}
	if m := in.Loc.Member(); m != "" {
		key = m + ":" + key
	}
	e.file.Metadata[key] = v
}

// Dispatch picks the scanner for in by content and runs it. A stream no
// scanner recognises is recorded as not scanned. Errors are recorded, not
// returned, unless the context is done.
func (e *Env) Dispatch(ctx context.Context, in Input) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	head := make([]byte, min(in.Size, HeadSize))
	if n, err := in.R.ReadAt(head, 0); n < len(head) {
		e.Fail(in.At(-1), fmt.Errorf("reading the first %d bytes: %w", len(head), err))
		return nil
	}
	for _, s := range e.scanners {
		if !s.Match(head, in.Size) {
			continue
		}
		// Note the format before scanning so that Formats lists containers
		// before what they contain; take it back if the scanner declines.
		mark := len(e.file.Formats)
		e.Noted(s.Format())
		err := s.Scan(ctx, in, e)
		if errors.Is(err, ErrNotFormat) {
			if len(e.file.Formats) > mark && e.file.Formats[mark] == s.Format() {
				e.file.Formats = append(e.file.Formats[:mark], e.file.Formats[mark+1:]...)
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.Fail(in.At(-1), err)
		}
		return nil
	}
	e.Skip(in.At(-1), "unknown format: no scanner recognised the content")
	return nil
}

// Member scans one member of a container. compressed is the member's stored
// size when it is compressed (for the ratio check), or 0.
func (e *Env) Member(ctx context.Context, parent Input, name string, r io.ReaderAt, size, compressed int64) error {
	child, ok := e.admit(parent, name, size, compressed)
	if !ok {
		return nil
	}
	child.R = r
	return e.Dispatch(ctx, child)
}

// MemberStream scans a member that can only be read as a stream (a tar in a
// gzip, a 7z member). It is held in memory up to Limits.SpillBytes and in a
// temporary file beyond, never more than the expansion budget allows.
func (e *Env) MemberStream(ctx context.Context, parent Input, name string, r io.Reader, compressed int64) error {
	left := e.Limits.MaxExpanded - e.expanded
	limit := left
	ratioBound := compressed > 0 && compressed <= math.MaxInt64/e.Limits.MaxRatio && compressed*e.Limits.MaxRatio < limit
	if ratioBound {
		limit = compressed * e.Limits.MaxRatio
	}
	lr := io.LimitReader(r, limit+1)
	var buf bytes.Buffer
	n, err := io.CopyN(&buf, lr, e.Limits.SpillBytes+1)
	var readErr error
	if err != nil && err != io.EOF {
		readErr = err
	}
	var ra io.ReaderAt = bytes.NewReader(buf.Bytes())
	total := n
	if err == nil { // more than SpillBytes: spill the rest to a temporary file
		f, terr := os.CreateTemp("", "modelseal-member-*")
		if terr != nil {
			return fmt.Errorf("spilling member %s: %w", name, terr)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if _, terr = f.Write(buf.Bytes()); terr != nil {
			return fmt.Errorf("spilling member %s: %w", name, terr)
		}
		buf = bytes.Buffer{}
		m, cerr := io.Copy(f, lr)
		total += m
		if cerr != nil {
			readErr = cerr
		}
		ra = f
	}
	loc := parent.MemberLoc(name)
	switch {
	case total > limit && ratioBound:
		e.Report(finding.Finding{Rule: "archive/compression-ratio", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("member expands past %d:1 of its %d compressed bytes (decompression bomb?); not scanned", e.Limits.MaxRatio, compressed)})
		return nil
	case total > limit:
		e.Report(finding.Finding{Rule: "archive/expansion-limit", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("member expands past the budget of %d bytes (decompression bomb?); not scanned", e.Limits.MaxExpanded)})
		return nil
	}
	if readErr != nil {
		// Scan what could be read: a broken stream must not hide a payload
		// at its start. The error is recorded too.
		e.Fail(loc, fmt.Errorf("reading member after %d bytes: %w", total, readErr))
	}
	return e.Member(ctx, parent, name, ra, total, 0)
}

// MemberLoc returns the location of the member name inside in.
func (in Input) MemberLoc(name string) finding.Location {
	l := in.At(-1)
	l.Members = append(l.Members, name)
	return l
}

// admit checks a member against the budget and returns its Input.
func (e *Env) admit(parent Input, name string, size, compressed int64) (Input, bool) {
	loc := parent.MemberLoc(name)
	child := Input{Size: size, Loc: loc, Name: name, Depth: parent.Depth + 1}
	switch {
	case child.Depth > e.Limits.MaxDepth:
		e.Report(finding.Finding{Rule: "archive/depth-limit", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("containers nest deeper than %d; member not scanned", e.Limits.MaxDepth)})
		return child, false
	case e.members >= e.Limits.MaxMembers:
		if !e.memberLimitHit {
			e.memberLimitHit = true
			e.Report(finding.Finding{Rule: "archive/member-limit", Severity: finding.High, Location: loc,
				Message: fmt.Sprintf("more than %d members; this one and the rest are not scanned", e.Limits.MaxMembers)})
		}
		return child, false
	case size > e.Limits.MaxExpanded-e.expanded:
		e.Report(finding.Finding{Rule: "archive/expansion-limit", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("member of %d bytes exceeds the expansion budget of %d bytes; not scanned", size, e.Limits.MaxExpanded)})
		return child, false
	case compressed > 0 && size/compressed > e.Limits.MaxRatio:
		e.Report(finding.Finding{Rule: "archive/compression-ratio", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("compression ratio %d:1 exceeds %d:1 (decompression bomb?); not scanned", size/compressed, e.Limits.MaxRatio)})
		return child, false
	}
	e.members++
	e.expanded += size
	return child, true
}

// Charge counts bytes a scanner expands itself (a decompressed joblib
// stream) against the budget; it reports false, having reported a finding,
// when the budget is exhausted.
func (e *Env) Charge(loc finding.Location, n int64) bool {
	if n > e.Limits.MaxExpanded-e.expanded {
		e.Report(finding.Finding{Rule: "archive/expansion-limit", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("stream expands past the budget of %d bytes (decompression bomb?)", e.Limits.MaxExpanded)})
		return false
	}
	e.expanded += n
	return true
}
