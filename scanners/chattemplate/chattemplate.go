// Package chattemplate checks Jinja chat templates, which inference servers
// render with the prompt (GGUF tokenizer.chat_template, Hugging Face
// tokenizer_config.json chat_template), for server-side template injection:
// the object walks (().__class__.__base__.__subclasses__(),
// self.__init__.__globals__, lipsum.__globals__.os) that reach Python's
// builtins when a server renders with a plain jinja2.Environment
// (CVE-2024-34359 in llama-cpp-python, CVE-2026-5760 in SGLang).
//
// The template is lexed the way Jinja does, so only expressions and
// statements are judged (text and comments are not) and identifiers are
// matched whole: "tools" never matches "os". Real templates use namespace(),
// loop, tojson, strftime_now and raise_exception; they never touch
// attributes that begin with an underscore, which is how every escape
// starts.
package chattemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Rule is the rule id of a template injection pattern.
const Rule = "chat-template/injection"

// Hit is one pattern seen in a template.
type Hit struct {
	// Pattern names what was seen, e.g. "__globals__" or "|attr".
	Pattern string
	// Severity grades it: dunder access is critical, namespace() is info.
	Severity finding.Severity
	// Off is the byte offset of the first occurrence in the template.
	Off int
	// Count is how many times it occurs.
	Count int
	// Why explains the pattern in a few words.
	Why string
}

// Sum returns the template's sha256 in hex.
func Sum(tpl string) string {
	h := sha256.Sum256([]byte(tpl))
	return hex.EncodeToString(h[:])
}

// execNames reach code execution or Python internals wherever they occur.
var execNames = map[string]string{
	"eval": "Python eval", "exec": "Python exec", "popen": "process execution (os.popen)",
	"subprocess": "the subprocess module", "getattr": "dynamic attribute access",
	"import_module": "module import", "builtins": "Python builtins", "globals": "a globals mapping",
	"func_globals": "a function's globals", "f_globals": "a frame's globals", "f_back": "a caller's frame",
	"f_locals": "a frame's locals", "gi_frame": "a generator's frame", "tb_frame": "a traceback's frame",
	"co_code": "code objects", "mro": "the class hierarchy (mro)",
}

// moduleNames are modules: critical as an attribute (x.os), high as a name.
var moduleNames = map[string]string{"os": "the os module", "sys": "the sys module", "importlib": "importlib", "posix": "the posix module"}

// contextNames are Jinja and Flask objects that lead to globals.
var contextNames = map[string]struct {
	sev finding.Severity
	why string
}{
	"self":      {finding.High, "the template reference object (self._TemplateReference__context leads to the render context)"},
	"lipsum":    {finding.Medium, "a Jinja global function whose __globals__ hold the os module"},
	"cycler":    {finding.Low, "a Jinja global class, a common step to __init__.__globals__"},
	"joiner":    {finding.Low, "a Jinja global class, a common step to __init__.__globals__"},
	"config":    {finding.Medium, "the Flask config object, not part of any chat template's context"},
	"request":   {finding.Medium, "the Flask request object, not part of any chat template's context"},
	"namespace": {finding.Info, "namespace(), used by real templates; dangerous only with dunder access"},
	"import":    {finding.High, "import outside an import statement"},
}

var (
	dunderRe  = regexp.MustCompile(`__[A-Za-z][A-Za-z0-9_]*__`)
	wordsRe   = regexp.MustCompile(`\b(popen|subprocess|getattr|__import__)\b`)
	loadStmts = map[string]bool{"import": true, "from": true, "include": true, "extends": true}
)

type tok struct {
	kind byte // 'n' name, 's' string, 'o' operator, '0' number
	text string
	off  int
}

type checker struct {
	hits map[string]*Hit
}

func (c *checker) add(pattern string, sev finding.Severity, off int, why string) {
	if h, ok := c.hits[pattern]; ok {
		h.Count++
		if sev > h.Severity {
			h.Severity = sev
		}
		return
	}
	c.hits[pattern] = &Hit{Pattern: pattern, Severity: sev, Off: off, Count: 1, Why: why}
}

// Check lexes a template and returns the patterns it finds, sorted by
// offset.
func Check(tpl string) []Hit {
	c := &checker{hits: map[string]*Hit{}}
	i := 0
	for i < len(tpl) {
		j := strings.IndexByte(tpl[i:], '{')
		if j < 0 || i+j+1 >= len(tpl) {
			break
		}
		i += j
		switch tpl[i+1] {
		case '#':
			end := strings.Index(tpl[i+2:], "#}")
			if end < 0 {
				i = len(tpl)
			} else {
				i += 2 + end + 2
			}
		case '{', '%':
			closer := "}}"
			if tpl[i+1] == '%' {
				closer = "%}"
			}
			toks, next := lex(tpl, i+2, closer)
			c.judge(toks, tpl[i+1] == '%')
			i = next
		default:
			i++
		}
	}
	out := make([]Hit, 0, len(c.hits))
	for _, h := range c.hits {
		out = append(out, *h)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Off != out[b].Off {
			return out[a].Off < out[b].Off
		}
		return out[a].Pattern < out[b].Pattern
	})
	return out
}

// lex reads tokens from i up to closer at bracket depth 0 and returns them
// with the offset just past the closer (or the end of the template).
func lex(s string, i int, closer string) ([]tok, int) {
	var toks []tok
	depth := 0
	for i < len(s) {
		ch := s[i]
		switch {
		case depth == 0 && strings.HasPrefix(s[i:], closer):
			return toks, i + len(closer)
		case depth == 0 && (ch == '-' || ch == '+') && strings.HasPrefix(s[i+1:], closer):
			return toks, i + 1 + len(closer)
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			toks = append(toks, tok{'n', s[i:j], i})
			i = j
		case ch >= '0' && ch <= '9':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == '_' || s[j] == 'e') {
				j++
			}
			toks = append(toks, tok{'0', s[i:j], i})
			i = j
		case ch == '\'' || ch == '"':
			j := i + 1
			for j < len(s) && s[j] != ch {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			end := min(j, len(s))
			toks = append(toks, tok{'s', unescape(s[i+1 : end]), i})
			i = end + 1
		default:
			switch ch {
			case '(', '[', '{':
				depth++
			case ')', ']', '}':
				if depth > 0 {
					depth--
				}
			}
			toks = append(toks, tok{'o', string(ch), i})
			i++
		}
	}
	return toks, len(s)
}

// unescape decodes a Jinja string literal's body as Python's
// unicode-escape codec does, so that '\x5f\x5fclass\x5f\x5f' is seen as
// __class__.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	if u, err := strconv.Unquote(`"` + strings.ReplaceAll(s, `"`, `\"`) + `"`); err == nil {
		return u
	}
	return s
}

func (c *checker) judge(toks []tok, statement bool) {
	for k, t := range toks {
		prev := tok{}
		if k > 0 {
			prev = toks[k-1]
		}
		attr := prev.kind == 'o' && prev.text == "."
		filter := prev.kind == 'o' && prev.text == "|"
		call := k+1 < len(toks) && toks[k+1].kind == 'o' && toks[k+1].text == "("
		switch t.kind {
		case 's':
			if m := dunderRe.FindString(t.text); m != "" {
				c.add(m, finding.High, t.off, "a dunder name in a string, reachable through |attr or a subscript")
			} else if prev.kind == 'o' && prev.text == "[" && strings.HasPrefix(t.text, "_") && len(t.text) > 1 {
				c.add("['"+t.text+"']", finding.High, t.off, "a private attribute looked up by subscript")
			} else if m := wordsRe.FindString(t.text); m != "" {
				c.add("'"+m+"'", finding.Medium, t.off, "the name of a code execution function in a string")
			}
		case 'n':
			name := t.text
			switch {
			case len(name) > 4 && strings.HasPrefix(name, "__") && strings.HasSuffix(name, "__"):
				c.add(name, finding.Critical, t.off, "dunder access, the first step of every Jinja sandbox escape")
			case attr && strings.HasPrefix(name, "_"):
				c.add("."+name, finding.High, t.off, "a private attribute, which the Jinja sandbox refuses and a plain Environment allows")
			case execNames[name] != "":
				c.add(name, finding.Critical, t.off, execNames[name])
			case moduleNames[name] != "":
				sev := finding.High
				if attr {
					sev = finding.Critical
				}
				c.add(name, sev, t.off, moduleNames[name])
			case name == "attr" && (filter || call):
				p := "attr("
				if filter {
					p = "|attr"
				}
				c.add(p, finding.High, t.off, "dynamic attribute access, how string-built dunder names are reached")
			case attr && call && (name == "system" || name == "open" || name == "read"):
				c.add("."+name+"()", finding.High, t.off, "a call that reads files or runs commands")
			case statement && k == 0 && loadStmts[name]:
				c.add("{% "+name+" %}", finding.Medium, t.off, "loads another template from the server")
			case statement && name == "import" && toks[0].text == "from":
				// the import of {% from "x" import y %}, reported above
			case !attr && !filter:
				if ctx, ok := contextNames[name]; ok && (name != "namespace" || call) {
					c.add(name, ctx.sev, t.off, ctx.why)
				}
			}
		}
	}
}

// Report checks tpl and reports each pattern as a finding at base plus the
// pattern's offset in in (base < 0: no offset). source names the template
// ("tokenizer.chat_template"). It returns the template's sha256, which every
// finding carries as evidence.
func Report(env *scan.Env, in scan.Input, base int64, source, tpl string) string {
	sum := Sum(tpl)
	for _, h := range Check(tpl) {
		loc := in.At(-1)
		if base >= 0 {
			loc = in.At(base + int64(h.Off))
		}
		msg := fmt.Sprintf("chat template %s uses %s: %s", source, h.Pattern, h.Why)
		if h.Count > 1 {
			msg += fmt.Sprintf(" (%d times)", h.Count)
		}
		env.Report(finding.Finding{Rule: Rule, Severity: h.Severity, Location: loc, Message: msg,
			Evidence: map[string]string{"sha256": sum, "template": source, "pattern": h.Pattern, "count": strconv.Itoa(h.Count)}})
	}
	return sum
}
