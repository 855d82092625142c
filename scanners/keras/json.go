package keras

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of the JSON reader. Real Keras configs are kilobytes to a few
// megabytes and nest a few dozen levels; Python's json module stops near a
// thousand levels.
const (
	// MaxConfigSize is the largest config the scanner reads into memory.
	MaxConfigSize = 64 << 20
	// maxDepth bounds nesting of arrays and objects.
	maxDepth = 512
	// maxNodes bounds the values of one document kept in memory.
	maxNodes = 2_000_000
)

// kind is the type of a JSON value.
type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

// node is one JSON value. Objects keep every member in order, duplicates
// included, as alternating key and value nodes in kids.
type node struct {
	kind kind
	off  int64 // byte offset of the value in the document
	str  string
	kids []node
}

// get returns the last value of key in an object (Python's json keeps the
// last of duplicate keys), or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != kObject {
		return nil
	}
	var v *node
	for i := 0; i+1 < len(n.kids); i += 2 {
		if n.kids[i].str == key {
			v = &n.kids[i+1]
		}
	}
	return v
}

// getStr returns the string value of key, or "" with false.
func (n *node) getStr(key string) (string, bool) {
	v := n.get(key)
	if v == nil || v.kind != kString {
		return "", false
	}
	return v.str, true
}

// jsonError is a syntax error at an offset of the document.
type jsonError struct {
	off int64
	msg string
}

func (e *jsonError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

// parser reads JSON as Python's json.loads does: strict grammar, no control
// characters in strings, plus the NaN, Infinity and -Infinity literals that
// json.dumps writes for non-finite floats.
type parser struct {
	b     []byte
	i     int
	nodes int
	dups  []dupKey // duplicate keys seen while building
	build bool     // build the tree (false: validate only)
}

// dupKey is a key repeated in one object.
type dupKey struct {
	key string
	off int64
}

// parseJSON parses a whole document into a tree.
func parseJSON(b []byte) (*node, []dupKey, error) {
	p := &parser{b: b, build: true}
	p.ws()
	n, err := p.value(0)
	if err != nil {
		return nil, nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, nil, p.fail("extra data after the JSON value")
	}
	return &n, p.dups, nil
}

// skimTop validates a whole document without building it, and returns its
// top-level object's members whose values are strings, plus the set of its
// keys. ok is false when the document is not a JSON object.
func skimTop(b []byte) (strs map[string]string, keys map[string]kind, ok bool, err error) {
	p := &parser{b: b}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, nil, false, nil
	}
	strs, keys = map[string]string{}, map[string]kind{}
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			p.ws()
			if p.peek() != '"' {
				return nil, nil, true, p.fail("expected a string key")
			}
			k, err := p.str(true)
			if err != nil {
				return nil, nil, true, err
			}
			p.ws()
			if p.peek() != ':' {
				return nil, nil, true, p.fail("expected ':'")
			}
			p.i++
			p.ws()
			if p.peek() == '"' {
				s, err := p.str(true)
				if err != nil {
					return nil, nil, true, err
				}
				strs[k] = s
				keys[k] = kString
			} else {
				v, err := p.value(1)
				if err != nil {
					return nil, nil, true, err
				}
				keys[k] = v.kind
				delete(strs, k) // the last value counts
			}
			p.ws()
			c := p.peek()
			p.i++
			if c == '}' {
				break
			}
			if c != ',' {
				p.i--
				return nil, nil, true, p.fail("expected ',' or '}'")
			}
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, nil, true, p.fail("extra data after the JSON value")
	}
	return strs, keys, true, nil
}

func (p *parser) fail(msg string) error { return &jsonError{off: int64(p.i), msg: msg} }

func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (node, error) {
	if depth > maxDepth {
		return node{}, p.fail(fmt.Sprintf("JSON nests deeper than %d levels", maxDepth))
	}
	p.nodes++
	if p.build && p.nodes > maxNodes {
		return node{}, p.fail(fmt.Sprintf("JSON has more than %d values", maxNodes))
	}
	off := int64(p.i)
	if p.i >= len(p.b) {
		return node{}, p.fail("JSON ends early")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str(p.build)
		return node{kind: kString, off: off, str: s}, err
	case c == 't':
		return node{kind: kBool, off: off, str: "true"}, p.lit("true")
	case c == 'f':
		return node{kind: kBool, off: off, str: "false"}, p.lit("false")
	case c == 'n':
		return node{kind: kNull, off: off}, p.lit("null")
	case c == 'N':
		return node{kind: kNumber, off: off, str: "NaN"}, p.lit("NaN")
	case c == 'I':
		return node{kind: kNumber, off: off, str: "Infinity"}, p.lit("Infinity")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		return node{}, p.fail(fmt.Sprintf("unexpected character %q", c))
	}
}

func (p *parser) lit(s string) error {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return p.fail("invalid literal")
	}
	p.i += len(s)
	return nil
}

func (p *parser) number() (node, error) {
	start := p.i
	if p.peek() == '-' {
		p.i++
		if p.peek() == 'I' {
			if err := p.lit("Infinity"); err != nil {
				return node{}, err
			}
			return node{kind: kNumber, off: int64(start), str: "-Infinity"}, nil
		}
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.peek() == '0' {
		p.i++
	} else if digits() == 0 {
		return node{}, p.fail("invalid number")
	}
	if p.peek() == '.' {
		p.i++
		if digits() == 0 {
			return node{}, p.fail("invalid number")
		}
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		if digits() == 0 {
			return node{}, p.fail("invalid number")
		}
	}
	n := node{kind: kNumber, off: int64(start)}
	if p.build {
		n.str = string(p.b[start:p.i])
	}
	return n, nil
}

func (p *parser) array(depth int) (node, error) {
	n := node{kind: kArray, off: int64(p.i)}
	p.i++
	p.ws()
	if p.peek() == ']' {
		p.i++
		return n, nil
	}
	for {
		p.ws()
		v, err := p.value(depth + 1)
		if err != nil {
			return n, err
		}
		if p.build {
			n.kids = append(n.kids, v)
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return n, nil
		default:
			return n, p.fail("expected ',' or ']'")
		}
	}
}

func (p *parser) object(depth int) (node, error) {
	n := node{kind: kObject, off: int64(p.i)}
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
		return n, nil
	}
	var seen map[string]bool
	for {
		p.ws()
		koff := int64(p.i)
		if p.peek() != '"' {
			return n, p.fail("expected a string key")
		}
		k, err := p.str(p.build)
		if err != nil {
			return n, err
		}
		p.ws()
		if p.peek() != ':' {
			return n, p.fail("expected ':'")
		}
		p.i++
		p.ws()
		v, err := p.value(depth + 1)
		if err != nil {
			return n, err
		}
		if p.build {
			if seen == nil {
				seen = map[string]bool{}
			}
			if seen[k] && len(p.dups) < 100 {
				p.dups = append(p.dups, dupKey{key: k, off: koff})
			}
			seen[k] = true
			n.kids = append(n.kids, node{kind: kString, off: koff, str: k}, v)
		}
		p.ws()
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return n, nil
		default:
			return n, p.fail("expected ',' or '}'")
		}
	}
}

// str reads a string at p.i (which is '"'); keep decodes it, otherwise it
// is only validated.
func (p *parser) str(keep bool) (string, error) {
	p.i++
	start := p.i
	// Fast path: no escapes.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			if !utf8.Valid(s) {
				return "", &jsonError{off: int64(start), msg: "string is not valid UTF-8"}
			}
			if keep {
				return string(s), nil
			}
			return "", nil
		}
		if c == '\\' {
			if !keep && !utf8.Valid(p.b[start:p.i]) {
				return "", &jsonError{off: int64(start), msg: "string is not valid UTF-8"}
			}
			break
		}
		if c < 0x20 {
			return "", p.fail("control character in a string")
		}
		p.i++
	}
	var out []byte
	if keep {
		out = append(out, p.b[start:p.i]...)
	}
	for {
		if p.i >= len(p.b) {
			return "", p.fail("string does not end")
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			if !utf8.Valid(out) && keep {
				return "", &jsonError{off: int64(start), msg: "string is not valid UTF-8"}
			}
			return string(out), nil
		case c < 0x20:
			return "", p.fail("control character in a string")
		case c != '\\':
			// Copy a run of plain bytes; UTF-8 validity is checked above
			// for kept strings and here for the rest.
			j := p.i
			for j < len(p.b) && p.b[j] != '"' && p.b[j] != '\\' && p.b[j] >= 0x20 {
				j++
			}
			if !keep && !utf8.Valid(p.b[p.i:j]) {
				return "", p.fail("string is not valid UTF-8")
			}
			if keep {
				out = append(out, p.b[p.i:j]...)
			}
			p.i = j
			continue
		}
		// An escape.
		if p.i+1 >= len(p.b) {
			return "", p.fail("string does not end")
		}
		e := p.b[p.i+1]
		p.i += 2
		var r rune
		switch e {
		case '"', '\\', '/':
			r = rune(e)
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'u':
			v, ok := p.hex4()
			if !ok {
				return "", p.fail("invalid \\u escape")
			}
			r = rune(v)
			if utf16.IsSurrogate(r) && bytes.HasPrefix(p.b[p.i:], []byte(`\u`)) {
				save := p.i
				p.i += 2
				if v2, ok := p.hex4(); ok {
					if rr := utf16.DecodeRune(r, rune(v2)); rr != utf8.RuneError {
						r = rr
					} else {
						p.i = save
					}
				} else {
					p.i = save
				}
			}
		default:
			p.i -= 2
			return "", p.fail("invalid escape")
		}
		if keep {
			out = utf8.AppendRune(out, r) // a lone surrogate becomes U+FFFD
		}
	}
}

func (p *parser) hex4() (uint64, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return v, true
}

// toUTF8 decodes a JSON document the way Python's json.loads decodes bytes
// (json.detect_encoding): UTF-8 with or without a byte-order mark, UTF-16
// and UTF-32 in either byte order, with or without one. skip is how many
// leading bytes of the input (a UTF-8 BOM) were dropped; offsets in a
// transcoded document are only approximate. ok is false for bytes that are
// not a valid encoding.
func toUTF8(b []byte) (out []byte, skip int, enc string, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		return b[3:], 3, "utf-8-sig", true
	case bytes.HasPrefix(b, []byte{0, 0, 0xFE, 0xFF}):
		return utf32(b[4:], true), 4, "utf-32-be", true
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE, 0, 0}):
		return utf32(b[4:], false), 4, "utf-32-le", true
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		return utf16of(b[2:], true), 2, "utf-16-be", true
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}):
		return utf16of(b[2:], false), 2, "utf-16-le", true
	}
	if len(b) >= 4 {
		switch {
		case b[0] == 0 && b[1] == 0:
			return utf32(b, true), 0, "utf-32-be", true
		case b[0] == 0:
			return utf16of(b, true), 0, "utf-16-be", true
		case b[1] == 0 && b[2] == 0 && b[3] == 0:
			return utf32(b, false), 0, "utf-32-le", true
		case b[1] == 0:
			return utf16of(b, false), 0, "utf-16-le", true
		}
	} else if len(b) == 2 {
		switch {
		case b[0] == 0:
			return utf16of(b, true), 0, "utf-16-be", true
		case b[1] == 0:
			return utf16of(b, false), 0, "utf-16-le", true
		}
	}
	return b, 0, "utf-8", true
}

func utf16of(b []byte, be bool) []byte {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		if be {
			u = append(u, uint16(b[i])<<8|uint16(b[i+1]))
		} else {
			u = append(u, uint16(b[i+1])<<8|uint16(b[i]))
		}
	}
	out := make([]byte, 0, len(u))
	for _, r := range utf16.Decode(u) {
		out = utf8.AppendRune(out, r)
	}
	return out
}

func utf32(b []byte, be bool) []byte {
	out := make([]byte, 0, len(b)/4)
	for i := 0; i+3 < len(b); i += 4 {
		var r rune
		if be {
			r = rune(b[i])<<24 | rune(b[i+1])<<16 | rune(b[i+2])<<8 | rune(b[i+3])
		} else {
			r = rune(b[i+3])<<24 | rune(b[i+2])<<16 | rune(b[i+1])<<8 | rune(b[i])
		}
		out = utf8.AppendRune(out, r)
	}
	return out
}
