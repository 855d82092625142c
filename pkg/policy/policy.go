// Package policy decides what a finding means: which Python globals are safe,
// which are dangerous and how much, which rule severities a user changed, and
// which severity fails a run. The built-in lists live in globals.yaml; a user
// file in the same format extends them (see Load and Extend).
package policy

import (
	_ "embed"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/modelseal/modelseal/pkg/finding"
)

//go:embed globals.yaml
var builtinLists []byte

// builtinFile parses globals.yaml once per process; the result is never
// modified (Extend only reads a File).
var builtinFile = sync.OnceValues(func() (*File, error) {
	return Load(strings.NewReader(string(builtinLists)))
})

// File is the on-disk form of a policy: the built-in lists and a user's
// --policy file share it.
type File struct {
	// Allow lists globals that are safe to import and call.
	Allow []Entry `yaml:"allow" json:"allow"`
	// Deny lists globals with the severity they carry and why.
	Deny []Entry `yaml:"deny" json:"deny"`
	// Rules changes the severity of a rule id ("zip/crc-mismatch: low"), or
	// turns it off ("off").
	Rules map[string]string `yaml:"rules" json:"rules"`
}

// Entry is one allow or deny line.
type Entry struct {
	// Global is a dotted full name, "module.name". Deny entries match it and
	// every name below it; allow entries match exactly, or everything below
	// when they end in ".*".
	Global string `yaml:"global" json:"global"`
	// Severity of a deny entry (default high).
	Severity string `yaml:"severity,omitempty" json:"severity,omitempty"`
	// Reason explains the entry; it is quoted in findings.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

type denyRule struct {
	severity finding.Severity
	reason   string
}

// Policy is a compiled set of lists. It is safe for concurrent use once built.
type Policy struct {
	allowExact  map[string]string
	allowPrefix map[string]string
	deny        map[string]denyRule
	rules       map[string]ruleOverride
}

type ruleOverride struct {
	off      bool
	severity finding.Severity
}

// Default returns the built-in policy.
func Default() *Policy {
	p := &Policy{
		allowExact:  map[string]string{},
		allowPrefix: map[string]string{},
		deny:        map[string]denyRule{},
		rules:       map[string]ruleOverride{},
	}
	f, err := builtinFile()
	if err != nil {
		panic(fmt.Sprintf("policy: built-in globals.yaml: %v", err)) // a build defect, caught by tests
	}
	if err := p.Extend(f); err != nil {
		panic(fmt.Sprintf("policy: built-in globals.yaml: %v", err))
	}
	return p
}

// Load parses a policy file (YAML or JSON). Unknown keys are errors, so a
// typo does not silently weaken a policy.
func Load(r io.Reader) (*File, error) {
	dec := yaml.NewDecoder(io.LimitReader(r, 16<<20))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if err == io.EOF {
			return &f, nil
		}
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &f, nil
}

// Extend adds a file's entries to the policy. A global both allowed and
// denied by the same file is an error; a later file overrides an earlier one
// (so a user may allow a global the built-in lists deny, or deny one they
// allow).
func (p *Policy) Extend(f *File) error {
	seen := map[string]bool{}
	for _, e := range f.Allow {
		g := Canonical(e.Global)
		if g == "" {
			return fmt.Errorf("policy: allow entry with an empty global")
		}
		seen[g] = true
		if rest, ok := strings.CutSuffix(g, ".*"); ok {
			p.allowPrefix[rest] = e.Reason
		} else {
			p.allowExact[g] = e.Reason
		}
		delete(p.deny, strings.TrimSuffix(g, ".*"))
	}
	for _, e := range f.Deny {
		g := strings.TrimSuffix(Canonical(e.Global), ".*")
		if g == "" {
			return fmt.Errorf("policy: deny entry with an empty global")
		}
		if seen[g] || seen[g+".*"] {
			return fmt.Errorf("policy: %s is both allowed and denied", e.Global)
		}
		sev := finding.High
		if e.Severity != "" {
			s, err := finding.ParseSeverity(e.Severity)
			if err != nil {
				return fmt.Errorf("policy: deny %s: %w", e.Global, err)
			}
			sev = s
		}
		p.deny[g] = denyRule{severity: sev, reason: e.Reason}
		delete(p.allowExact, g)
		delete(p.allowPrefix, g)
	}
	for rule, v := range f.Rules {
		if strings.EqualFold(v, "off") {
			p.rules[rule] = ruleOverride{off: true}
			continue
		}
		s, err := finding.ParseSeverity(v)
		if err != nil {
			return fmt.Errorf("policy: rule %s: %w", rule, err)
		}
		p.rules[rule] = ruleOverride{severity: s}
	}
	return nil
}

// moduleAliases folds the names CPython's unpickler maps to one module (the
// Python 2 names in _compat_pickle, and the C accelerators that re-export a
// pure module).
var moduleAliases = map[string]string{
	"__builtin__":      "builtins",
	"__builtins__":     "builtins",
	"exceptions":       "builtins",
	"posix":            "os",
	"nt":               "os",
	"_operator":        "operator",
	"_io":              "io",
	"_codecs":          "codecs",
	"_pickle":          "pickle",
	"cPickle":          "pickle",
	"copy_reg":         "copyreg",
	"_functools":       "functools",
	"_collections":     "collections",
	"httplib":          "http.client",
	"urllib2":          "urllib.request",
	"_socket":          "socket",
	"_thread":          "_thread",
	"thread":           "_thread",
	"_posixsubprocess": "_posixsubprocess",
	"cStringIO":        "io",
	"StringIO":         "io",
	"_sqlite3":         "sqlite3",
	"Queue":            "queue",
	"_signal":          "signal",
}

// Canonical folds module aliases in a dotted name: "posix.system" becomes
// "os.system", "__builtin__.eval" becomes "builtins.eval".
func Canonical(dotted string) string {
	dotted = strings.TrimSpace(dotted)
	first, rest, hasRest := strings.Cut(dotted, ".")
	if a, ok := moduleAliases[first]; ok {
		if hasRest {
			return a + "." + rest
		}
		return a
	}
	return dotted
}

// Verdict is the policy's judgement of one global.
type Verdict struct {
	// Safe is true when the global is allowed.
	Safe bool
	// Severity is the severity of an unsafe global (at least Medium).
	Severity finding.Severity
	// Canonical is the global with module aliases folded.
	Canonical string
	// Resolved is what an attribute walk in the name reaches, when the
	// scanner can tell ("pathlib.os.system" reaches "os.system",
	// "builtins.print.__self__.eval" reaches "builtins.eval"); otherwise it
	// equals Canonical.
	Resolved string
	// Matched is the list entry that decided (empty for the default).
	Matched string
	// Reason explains the verdict.
	Reason string
}

// dunders are attribute names that walk from any object to its class, module
// globals or builtins: a name containing one reaches anything.
var dunders = map[string]bool{
	"__self__": true, "__globals__": true, "__builtins__": true, "__class__": true,
	"__subclasses__": true, "__init__": true, "__dict__": true, "__getattribute__": true,
	"__base__": true, "__bases__": true, "__mro__": true, "mro": true, "__module__": true,
	"__code__": true, "__func__": true, "__closure__": true, "__reduce__": true,
	"__reduce_ex__": true, "__import__": true, "__loader__": true, "__spec__": true,
	"__getattr__": true, "__setattr__": true, "__call__": true, "__new__": true,
}

// Global judges the global module.name as CPython would resolve it: with
// protocol 4 and later a dotted name is an attribute walk, so every prefix
// of the full dotted name is checked against the deny list, and the most
// severe match wins.
func (p *Policy) Global(module, name string) Verdict {
	full := Canonical(module + "." + name)
	if module == "" {
		full = Canonical(name)
	}
	v := Verdict{Canonical: full, Resolved: p.resolve(module, full)}
	if reason, ok := p.allowExact[full]; ok {
		v.Safe, v.Matched, v.Reason = true, full, reason
		return v
	}
	parts := strings.Split(full, ".")
	v.Severity = finding.Medium
	v.Reason = "not on the allowlist: importing and calling it runs code the scanner cannot vouch for"
	// denyDepth is how many leading components the deciding deny entry
	// covers; an attribute walk or dunder counts as deeper than any prefix.
	denyDepth := 0
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], ".")
		if r, ok := p.deny[prefix]; ok && (v.Matched == "" || r.severity > v.Severity) {
			v.Severity, v.Matched, v.Reason = r.severity, prefix, r.reason
			denyDepth = i
		}
	}
	// An attribute walk ("pathlib" + "os.system") reaches the attribute's
	// own module, so every run of components is checked, as fickling does,
	// wherever it starts.
	for k := 1; k < len(parts); k++ {
		for j := k + 1; j <= len(parts); j++ {
			prefix := strings.Join(parts[k:j], ".")
			if r, ok := p.deny[prefix]; ok && (r.severity > v.Severity || v.Matched == "") {
				v.Severity, v.Matched = r.severity, prefix
				v.Reason = "attribute walk reaches " + prefix + ": " + r.reason
				denyDepth = len(parts) + 1
			}
		}
	}
	for _, c := range parts[1:] {
		if dunders[c] {
			v.Severity, v.Matched = finding.Critical, c
			v.Reason = "dotted name walks through " + c + ", which reaches any object"
			denyDepth = len(parts) + 1
			break
		}
	}
	// An allowed prefix ("torch.nn.modules.*") covers what no deeper deny
	// entry, attribute walk or dunder claims.
	for i := len(parts) - 1; i >= 1; i-- {
		prefix := strings.Join(parts[:i], ".")
		if reason, ok := p.allowPrefix[prefix]; ok && denyDepth <= i {
			return Verdict{Safe: true, Canonical: full, Matched: prefix + ".*", Reason: reason}
		}
	}
	return v
}

// resolve follows the attribute walks the scanner can see through: a
// builtin function's __self__ is its module, and a run of components that
// starts, inside the attribute name, with a module name on the deny list
// is that module ("pathlib" + "os.system" is os.system).
func (p *Policy) resolve(module, full string) string {
	parts := strings.Split(full, ".")
	for i := 2; i < len(parts)-1; i++ {
		if parts[i] == "__self__" && module != "" {
			return p.resolve("", Canonical(module)+"."+strings.Join(parts[i+1:], "."))
		}
	}
	nameStart := 1
	if module != "" {
		nameStart = max(len(strings.Split(Canonical(module), ".")), 1)
	}
	for k := nameStart; k < len(parts)-1; k++ {
		first := Canonical(parts[k])
		if _, ok := p.deny[first]; ok && !strings.HasPrefix(parts[k], "__") {
			return Canonical(strings.Join(parts[k:], "."))
		}
	}
	return full
}

// Apply changes a finding's severity as the policy's rule overrides say, and
// reports whether the finding is kept (false when its rule is turned off).
func (p *Policy) Apply(f *finding.Finding) bool {
	o, ok := p.rules[f.Rule]
	if !ok {
		return true
	}
	if o.off {
		return false
	}
	f.Severity = o.severity
	return true
}

// Lists returns the compiled allow and deny lists, sorted, for
// documentation and the "modelseal policy" listing.
func (p *Policy) Lists() File {
	var f File
	for g, r := range p.allowExact {
		f.Allow = append(f.Allow, Entry{Global: g, Reason: r})
	}
	for g, r := range p.allowPrefix {
		f.Allow = append(f.Allow, Entry{Global: g + ".*", Reason: r})
	}
	for g, r := range p.deny {
		f.Deny = append(f.Deny, Entry{Global: g, Severity: r.severity.String(), Reason: r.reason})
	}
	sort.Slice(f.Allow, func(i, j int) bool { return f.Allow[i].Global < f.Allow[j].Global })
	sort.Slice(f.Deny, func(i, j int) bool { return f.Deny[i].Global < f.Deny[j].Global })
	return f
}
