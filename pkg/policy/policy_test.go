package policy

import (
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
)

func TestGlobal(t *testing.T) {
	p := Default()
	tests := []struct {
		module, name string
		safe         bool
		sev          finding.Severity
	}{
		{"collections", "OrderedDict", true, 0},
		{"torch._utils", "_rebuild_tensor_v2", true, 0},
		{"_codecs", "encode", true, 0},
		{"__builtin__", "set", true, 0},
		{"builtins", "eval", false, finding.Critical},
		{"__builtin__", "eval", false, finding.Critical},
		{"posix", "system", false, finding.Critical},
		{"nt", "system", false, finding.Critical},
		{"os.path", "join", false, finding.Critical},
		{"_operator", "attrgetter", false, finding.Critical},
		{"pathlib", "os.system", false, finding.Critical},                // attribute walk to os
		{"builtins", "print.__self__.eval", false, finding.Critical},     // dunder walk
		{"collections", "OrderedDict.__init__", false, finding.Critical}, // allowed prefix, dunder below
		{"bdb", "Bdb.run", false, finding.Critical},
		{"requests.api", "get", false, finding.High},
		{"httplib", "HTTPConnection", false, finding.High},
		{"mylib.models", "Net", false, finding.Medium},
		{"torch.nn.modules.linear", "Linear", false, finding.Medium},
	}
	for _, tt := range tests {
		v := p.Global(tt.module, tt.name)
		if v.Safe != tt.safe || (!tt.safe && v.Severity != tt.sev) {
			t.Errorf("%s.%s: safe=%v sev=%v (%s: %s), want safe=%v sev=%v", tt.module, tt.name, v.Safe, v.Severity, v.Matched, v.Reason, tt.safe, tt.sev)
		}
	}
}

func TestExtend(t *testing.T) {
	p := Default()
	f, err := Load(strings.NewReader(`
allow:
  - {global: torch.nn.modules.*, reason: our own layers}
  - {global: mylib.Net}
deny:
  - {global: collections.OrderedDict, severity: low, reason: paranoid}
rules:
  pickle/trailing-data: "off"
  zip/flag-bits: high
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Extend(f); err != nil {
		t.Fatal(err)
	}
	if v := p.Global("torch.nn.modules.linear", "Linear"); !v.Safe {
		t.Errorf("prefix allow: %+v", v)
	}
	if v := p.Global("torch.nn.modules.os", "system"); v.Safe || v.Severity != finding.Critical {
		t.Errorf("a deny below an allowed prefix still wins: %+v", v)
	}
	if v := p.Global("mylib", "Net"); !v.Safe {
		t.Errorf("exact allow: %+v", v)
	}
	if v := p.Global("collections", "OrderedDict"); v.Safe || v.Severity != finding.Low {
		t.Errorf("user deny over built-in allow: %+v", v)
	}
	off := finding.Finding{Rule: "pickle/trailing-data", Severity: finding.Low}
	if p.Apply(&off) {
		t.Error("rule turned off is kept")
	}
	up := finding.Finding{Rule: "zip/flag-bits", Severity: finding.Low}
	if !p.Apply(&up) || up.Severity != finding.High {
		t.Errorf("override: %+v", up)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, bad := range []string{
		"allow: [{global: x, typo: 1}]",
		"deny: [{global: x, severity: extreme}]",
		"rules: {a: sometimes}",
		"allow: [{global: a.b}]\ndeny: [{global: a.b}]",
		"allow: [{global: ''}]",
	} {
		f, err := Load(strings.NewReader(bad))
		if err == nil {
			err = Default().Extend(f)
		}
		if err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestBuiltinListsHaveReasons(t *testing.T) {
	l := Default().Lists()
	if len(l.Allow) < 50 || len(l.Deny) < 100 {
		t.Fatalf("lists too short: %d allow, %d deny", len(l.Allow), len(l.Deny))
	}
	for _, e := range append(l.Allow, l.Deny...) {
		if e.Reason == "" {
			t.Errorf("%s has no reason", e.Global)
		}
	}
}
