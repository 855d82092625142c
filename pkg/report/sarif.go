package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// SARIF 2.1.0 as GitHub code scanning accepts it: one run, rules with a
// security-severity, results with a level, a physical location (the file,
// relative and "/"-separated) and, inside containers, a logical location
// naming the member path.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Results     []sarifResult     `json:"results"`
	Invocations []sarifInvocation `json:"invocations"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Version        string      `json:"version"`
	SemanticVer    string      `json:"semanticVersion"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      sarifText       `json:"fullDescription"`
	Help                 sarifText       `json:"help"`
	DefaultConfiguration sarifRuleConfig `json:"defaultConfiguration"`
	Properties           map[string]any  `json:"properties"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical  `json:"physicalLocation"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	ByteOffset int64 `json:"byteOffset"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

// sarifLevel maps a severity to a SARIF level.
func sarifLevel(s finding.Severity) string {
	switch {
	case s >= finding.High:
		return "error"
	case s == finding.Medium:
		return "warning"
	}
	return "note"
}

// securitySeverity is GitHub's 0.0-10.0 score for a severity.
func securitySeverity(s finding.Severity) string {
	return [...]string{"0.0", "2.0", "5.5", "8.0", "9.5"}[s]
}

// artifactURI turns a path into a relative "/"-separated URI reference.
func artifactURI(p string) string {
	p = filepath.ToSlash(filepath.Clean(p))
	p = strings.TrimPrefix(p, "./")
	u := url.URL{Path: p}
	return u.EscapedPath()
}

func sarifLoc(l finding.Location) sarifLocation {
	loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: artifactURI(l.Path)}}}
	if len(l.Members) == 0 && l.Offset >= 0 {
		loc.PhysicalLocation.Region = &sarifRegion{ByteOffset: l.Offset}
	}
	if len(l.Members) > 0 {
		fq := filepath.ToSlash(l.Path) + "!" + l.Member()
		loc.LogicalLocations = []sarifLogical{{Name: l.Members[len(l.Members)-1], FullyQualifiedName: fq, Kind: "member"}}
	}
	return loc
}

// SARIF writes a SARIF 2.1.0 log.
func SARIF(w io.Writer, res *scan.Result, opts Options) error {
	// One rule per rule id; its default level is that of its most severe finding.
	type ruleInfo struct {
		sev     finding.Severity
		example string
	}
	rules := map[string]*ruleInfo{}
	for _, f := range res.Files {
		for _, x := range f.Findings {
			r := rules[x.Rule]
			if r == nil {
				r = &ruleInfo{sev: x.Severity, example: x.Message}
				rules[x.Rule] = r
			}
			if x.Severity > r.sev {
				r.sev = x.Severity
			}
		}
	}
	ids := make([]string, 0, len(rules))
	for id := range rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	index := map[string]int{}
	driver := sarifDriver{Name: "modelseal", InformationURI: "https://github.com/modelseal/modelseal",
		Version: Version, SemanticVer: Version, Rules: []sarifRule{}}
	for i, id := range ids {
		index[id] = i
		desc := RuleDescription(id)
		if desc == "" {
			desc = rules[id].example
		}
		driver.Rules = append(driver.Rules, sarifRule{
			ID: id, Name: ruleName(id),
			ShortDescription:     sarifText{Text: desc},
			FullDescription:      sarifText{Text: desc},
			Help:                 sarifText{Text: desc + " See the modelseal README, section Rules."},
			DefaultConfiguration: sarifRuleConfig{Level: sarifLevel(rules[id].sev)},
			Properties: map[string]any{
				"security-severity": securitySeverity(rules[id].sev),
				"tags":              []string{"security", "machine-learning", strings.SplitN(id, "/", 2)[0]},
			},
		})
	}
	run := sarifRun{Tool: sarifTool{Driver: driver}, Results: []sarifResult{}}
	inv := sarifInvocation{ExecutionSuccessful: true, ToolExecutionNotifications: []sarifNotification{}}
	for _, f := range res.Files {
		for _, x := range f.Findings {
			msg := x.Message
			if m := x.Location.Member(); m != "" {
				msg += " (in " + m + ")"
			}
			fp := sha256.Sum256([]byte(x.Rule + "\x00" + x.Location.Path + "\x00" + x.Location.Member() + "\x00" + x.Global + "\x00" + x.Message))
			props := map[string]any{"severity": x.Severity.String()}
			if x.Global != "" {
				props["global"] = x.Global
			}
			if x.Location.Offset >= 0 {
				props["byteOffset"] = x.Location.Offset
			}
			run.Results = append(run.Results, sarifResult{
				RuleID: x.Rule, RuleIndex: index[x.Rule], Level: sarifLevel(x.Severity),
				Message:             sarifText{Text: msg},
				Locations:           []sarifLocation{sarifLoc(x.Location)},
				PartialFingerprints: map[string]string{"modelsealFinding/v1": hex.EncodeToString(fp[:16])},
				Properties:          props,
			})
		}
		for _, p := range f.Errors {
			inv.ExecutionSuccessful = false
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarifNotification{
				Level: "error", Message: sarifText{Text: fmt.Sprintf("could not scan %s: %s", p.Location.Path, p.Message)},
				Locations: []sarifLocation{sarifLoc(p.Location)}})
		}
		for _, p := range f.Unscanned {
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarifNotification{
				Level: "note", Message: sarifText{Text: fmt.Sprintf("not scanned: %s", p.Message)},
				Locations: []sarifLocation{sarifLoc(p.Location)}})
		}
	}
	run.Invocations = []sarifInvocation{inv}
	log := sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// ruleName turns "pickle/dangerous-global" into "PickleDangerousGlobal".
func ruleName(id string) string {
	var b strings.Builder
	up := true
	for _, r := range id {
		if r == '/' || r == '-' || r == '_' || r == '.' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}
