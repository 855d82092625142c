// Package finding defines what a scanner reports: a Finding with a rule id,
// a severity, a location (file, member path inside containers, offset) and
// evidence. Scanners emit findings; policy and reports consume them.
package finding

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Severity orders findings from informational notes to code execution.
type Severity int

// Severities, lowest first. The zero value is Info.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// String returns the lower-case name of the severity ("high").
func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity parses a severity name, case-insensitively.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return Info, fmt.Errorf("unknown severity %q (want one of %s)", s, strings.Join(severityNames[:], ", "))
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Location says where a finding is: the file as named on the command line
// (or relative to the scanned folder), the chain of member names inside
// containers (outermost first), and a byte offset inside the innermost
// stream when known (-1 otherwise).
type Location struct {
	Path    string   `json:"path"`
	Members []string `json:"members,omitempty"`
	Offset  int64    `json:"offset"`
}

// String renders the location as path!member!member@offset.
func (l Location) String() string {
	var b strings.Builder
	b.WriteString(l.Path)
	for _, m := range l.Members {
		b.WriteString("!")
		b.WriteString(m)
	}
	if l.Offset >= 0 {
		fmt.Fprintf(&b, "@%d", l.Offset)
	}
	return b.String()
}

// Member returns the member chain joined with "!", or "" for the file itself.
func (l Location) Member() string { return strings.Join(l.Members, "!") }

// Finding is one thing a scanner saw.
type Finding struct {
	// Rule is a stable identifier such as "pickle/dangerous-global".
	Rule string `json:"rule"`
	// Severity is the scanner's severity after policy overrides.
	Severity Severity `json:"severity"`
	// Location is where the finding was made.
	Location Location `json:"location"`
	// Message is one human sentence.
	Message string `json:"message"`
	// Global is the Python global (module.name) involved, if any.
	Global string `json:"global,omitempty"`
	// Evidence holds other facts, such as the opcode or a hash.
	Evidence map[string]string `json:"evidence,omitempty"`
}

// String renders a finding on one line.
func (f Finding) String() string {
	return fmt.Sprintf("%s %s %s: %s", strings.ToUpper(f.Severity.String()), f.Rule, f.Location, f.Message)
}

var _ json.Marshaler = (*Severity)(nil) // keep the text marshaller in JSON

// MarshalJSON encodes the severity as a JSON string.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
