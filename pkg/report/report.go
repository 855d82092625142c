// Package report renders a scan result as text for people, JSON for programs
// (schema "modelseal.scan/v1", documented in README.md) and SARIF 2.1.0 for
// code-scanning services such as GitHub's.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Version is modelseal's version as reports state it.
const Version = "0.1.0"

// Options are what every renderer needs besides the result.
type Options struct {
	// FailOn is the threshold of the run; the verdict follows from it.
	FailOn finding.Severity
}

// Func renders a result.
type Func func(w io.Writer, res *scan.Result, opts Options) error

// Renderer returns the renderer for a format name: text, json or sarif.
func Renderer(format string) (Func, error) {
	switch strings.ToLower(format) {
	case "text", "":
		return Text, nil
	case "json":
		return JSON, nil
	case "sarif":
		return SARIF, nil
	}
	return nil, fmt.Errorf("unknown format %q (want text, json or sarif)", format)
}

// Verdict names the outcome of a run: "pass", "fail" or "error".
func Verdict(res *scan.Result, failOn finding.Severity) string {
	switch res.ExitCode(failOn) {
	case scan.ExitFindings:
		return "fail"
	case scan.ExitError:
		return "error"
	}
	return "pass"
}

// Text writes a human summary: one block per file with findings, errors or
// unscanned members, then a tally.
func Text(w io.Writer, res *scan.Result, opts Options) error {
	ew := &errWriter{w: w}
	counts := map[finding.Severity]int{}
	var errs, unscanned, clean int
	for _, f := range res.Files {
		for _, x := range f.Findings {
			counts[x.Severity]++
		}
		errs += len(f.Errors)
		unscanned += len(f.Unscanned)
		if len(f.Findings) == 0 && len(f.Errors) == 0 && len(f.Unscanned) == 0 {
			clean++
			continue
		}
		formats := strings.Join(f.Formats, ", ")
		if formats == "" {
			formats = "unrecognised"
		}
		ew.printf("%s (%s, %d bytes)\n", f.Path, formats, f.Size)
		fs := append([]finding.Finding(nil), f.Findings...)
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].Severity > fs[j].Severity })
		for _, x := range fs {
			where := ""
			if m := x.Location.Member(); m != "" {
				where = " in " + m
			}
			if x.Location.Offset >= 0 {
				where += fmt.Sprintf(" at byte %d", x.Location.Offset)
			}
			ew.printf("  %-8s %s%s: %s\n", strings.ToUpper(x.Severity.String()), x.Rule, where, x.Message)
		}
		for _, p := range f.Errors {
			ew.printf("  ERROR    %s%s\n", memberPrefix(p.Location), p.Message)
		}
		for _, p := range f.Unscanned {
			ew.printf("  SKIPPED  %s%s\n", memberPrefix(p.Location), p.Message)
		}
	}
	var parts []string
	for s := finding.Critical; s >= finding.Info; s-- {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no findings")
	}
	ew.printf("\n%d files (%d clean), %.1f MB in %s: %s; %d errors, %d not scanned. Verdict at --fail-on %s: %s\n",
		len(res.Files), clean, float64(res.Bytes)/1e6, res.Duration.Round(1e6), strings.Join(parts, ", "),
		errs, unscanned, opts.FailOn, strings.ToUpper(Verdict(res, opts.FailOn)))
	return ew.err
}

func memberPrefix(l finding.Location) string {
	if m := l.Member(); m != "" {
		return m + ": "
	}
	return ""
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
