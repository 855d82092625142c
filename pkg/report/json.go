package report

import (
	"encoding/json"
	"io"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// JSONSchemaID names the JSON report's schema; it changes only when a field
// changes meaning or goes away (fields may be added).
const JSONSchemaID = "modelseal.scan/v1"

// JSONReport is the JSON report's top level.
type JSONReport struct {
	Schema   string      `json:"schema"`
	Tool     JSONTool    `json:"tool"`
	FailOn   string      `json:"fail_on"`
	Verdict  string      `json:"verdict"`
	ExitCode int         `json:"exit_code"`
	Summary  JSONSummary `json:"summary"`
	Files    []JSONFile  `json:"files"`
}

// JSONTool names the producer.
type JSONTool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// JSONSummary counts what the run saw.
type JSONSummary struct {
	Files      int            `json:"files"`
	Bytes      int64          `json:"bytes"`
	Findings   map[string]int `json:"findings"`
	Errors     int            `json:"errors"`
	Unscanned  int            `json:"unscanned"`
	DurationMS int64          `json:"duration_ms"`
}

// JSONFile is one top-level file.
type JSONFile struct {
	Path      string            `json:"path"`
	Size      int64             `json:"size"`
	Formats   []string          `json:"formats"`
	Findings  []finding.Finding `json:"findings"`
	Errors    []scan.Problem    `json:"errors"`
	Unscanned []scan.Problem    `json:"unscanned"`
}

// BuildJSON returns the JSON report's value.
func BuildJSON(res *scan.Result, opts Options) JSONReport {
	r := JSONReport{
		Schema:   JSONSchemaID,
		Tool:     JSONTool{Name: "modelseal", Version: Version},
		FailOn:   opts.FailOn.String(),
		Verdict:  Verdict(res, opts.FailOn),
		ExitCode: res.ExitCode(opts.FailOn),
		Summary: JSONSummary{Files: len(res.Files), Bytes: res.Bytes, Findings: map[string]int{},
			DurationMS: res.Duration.Milliseconds()},
		Files: []JSONFile{},
	}
	for s := finding.Info; s <= finding.Critical; s++ {
		r.Summary.Findings[s.String()] = 0
	}
	for _, f := range res.Files {
		jf := JSONFile{Path: f.Path, Size: f.Size, Formats: nonNil(f.Formats), Findings: nonNil(f.Findings),
			Errors: nonNil(f.Errors), Unscanned: nonNil(f.Unscanned)}
		for _, x := range f.Findings {
			r.Summary.Findings[x.Severity.String()]++
		}
		r.Summary.Errors += len(f.Errors)
		r.Summary.Unscanned += len(f.Unscanned)
		r.Files = append(r.Files, jf)
	}
	return r
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// JSON writes the report as indented JSON.
func JSON(w io.Writer, res *scan.Result, opts Options) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(BuildJSON(res, opts))
}
