package numpy

import (
	"fmt"
	"strconv"
	"strings"
)

// kind is the type of a Python literal in a .npy header.
type kind int

const (
	kStr kind = iota
	kInt
	kBool
	kNone
	kTuple
	kList
	kDict
)

// lit is a parsed Python literal: the subset numpy's header writer emits
// (repr of a dict of str, bool, int, tuples and lists).
type lit struct {
	k     kind
	s     string // kStr
	n     int64  // kInt (saturated: big marks overflow)
	big   bool   // kInt too large for int64
	b     bool   // kBool
	items []*lit // kTuple, kList; kDict as key, value pairs
}

func (l *lit) String() string {
	switch l.k {
	case kStr:
		return strconv.Quote(l.s)
	case kInt:
		if l.big {
			return "<huge int>"
		}
		return strconv.FormatInt(l.n, 10)
	case kBool:
		if l.b {
			return "True"
		}
		return "False"
	case kNone:
		return "None"
	}
	open, close := "(", ")"
	switch l.k {
	case kList:
		open, close = "[", "]"
	case kDict:
		open, close = "{", "}"
	}
	var parts []string
	for i := 0; i < len(l.items); i++ {
		if l.k == kDict && i+1 < len(l.items) {
			parts = append(parts, l.items[i].String()+": "+l.items[i+1].String())
			i++
			continue
		}
		parts = append(parts, l.items[i].String())
	}
	return open + strings.Join(parts, ", ") + close
}

// maxNesting bounds literal nesting: numpy's own structured dtypes nest a
// few levels at most.
const maxNesting = 32

// parser reads one Python literal.
type parser struct {
	s      string
	i      int
	allowL bool // accept Python 2 long suffixes (numpy's _filter_header, versions 1 and 2)
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("header byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.i++
		default:
			return
		}
	}
}

// parseLiteral parses s as exactly one literal, surrounded by whitespace.
func parseLiteral(s string, allowL bool) (*lit, error) {
	p := &parser{s: s, allowL: allowL}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected %q after the literal", p.s[p.i])
	}
	return v, nil
}

func (p *parser) value(depth int) (*lit, error) {
	if depth > maxNesting {
		return nil, p.errorf("literal nests deeper than %d", maxNesting)
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, p.errorf("header ends inside a literal")
	}
	switch c := p.s[p.i]; {
	case c == '\'' || c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &lit{k: kStr, s: s}, nil
	case c == '-' || c == '+' || (c >= '0' && c <= '9'):
		return p.int()
	case c == '(':
		return p.seq(depth, kTuple, ')')
	case c == '[':
		return p.seq(depth, kList, ']')
	case c == '{':
		return p.dict(depth)
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return &lit{k: kBool, b: true}, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return &lit{k: kBool}, nil
	case strings.HasPrefix(p.s[p.i:], "None"):
		p.i += 4
		return &lit{k: kNone}, nil
	default:
		return nil, p.errorf("unexpected %q", c)
	}
}

func (p *parser) int() (*lit, error) {
	start := p.i
	neg := false
	if c := p.s[p.i]; c == '-' || c == '+' {
		neg = c == '-'
		p.i++
		p.space()
	}
	digits := p.i
	for p.i < len(p.s) && (p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '_') {
		p.i++
	}
	if p.i == digits {
		p.i = start
		return nil, p.errorf("a sign without digits")
	}
	text := strings.ReplaceAll(p.s[digits:p.i], "_", "")
	if p.allowL && p.i < len(p.s) && (p.s[p.i] == 'L' || p.s[p.i] == 'l') {
		p.i++
	}
	v := &lit{k: kInt}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		if len(text) > 1 && text[0] == '0' {
			return nil, p.errorf("integer %q with a leading zero", text)
		}
		v.big = true
		return v, nil
	}
	if len(text) > 1 && text[0] == '0' && n != 0 {
		return nil, p.errorf("integer %q with a leading zero", text)
	}
	if neg {
		n = -n
	}
	v.n = n
	return v, nil
}

// str parses a quoted string with Python's common escapes.
func (p *parser) str() (string, error) {
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\n':
			return "", p.errorf("newline inside a string")
		case c != '\\':
			b.WriteByte(c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			break
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '0':
			b.WriteByte(0)
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if p.i+n > len(p.s) {
				return "", p.errorf("short \\%c escape", e)
			}
			r, err := strconv.ParseUint(p.s[p.i:p.i+n], 16, 32)
			if err != nil {
				return "", p.errorf("bad \\%c escape", e)
			}
			b.WriteRune(rune(r))
			p.i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) seq(depth int, k kind, close byte) (*lit, error) {
	p.i++ // opening bracket
	v := &lit{k: k}
	sawComma := false
	for {
		p.space()
		if p.i >= len(p.s) {
			return nil, p.errorf("header ends inside a %s", map[kind]string{kTuple: "tuple", kList: "list"}[k])
		}
		if p.s[p.i] == close {
			p.i++
			if k == kTuple && len(v.items) == 1 && !sawComma {
				return v.items[0], nil // (x) is x, not a tuple
			}
			return v, nil
		}
		if len(v.items) > 0 && !sawComma {
			return nil, p.errorf("missing comma")
		}
		item, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, item)
		p.space()
		sawComma = p.i < len(p.s) && p.s[p.i] == ','
		if sawComma {
			p.i++
		}
	}
}

func (p *parser) dict(depth int) (*lit, error) {
	p.i++ // {
	v := &lit{k: kDict}
	for {
		p.space()
		if p.i >= len(p.s) {
			return nil, p.errorf("header ends inside a dict")
		}
		if p.s[p.i] == '}' {
			p.i++
			return v, nil
		}
		key, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.errorf("missing ':' after a dict key")
		}
		p.i++
		val, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, key, val)
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '}' {
			return nil, p.errorf("missing comma in a dict")
		}
	}
}
