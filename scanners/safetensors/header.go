// Package safetensors checks safetensors files and their sharded-model
// index files (model.safetensors.index.json) without reading tensor data.
//
// A safetensors file is a little-endian u64 header length N, N bytes of
// UTF-8 JSON, then one buffer holding every tensor. The header is validated
// the way the reference implementation (huggingface/safetensors) does:
// the size limit, UTF-8, strict JSON, known dtypes, shape and offset
// arithmetic with overflow checks, tensors contiguous from offset 0 and the
// buffer ending exactly at the end of the file. It also refuses duplicate
// keys, which Go's encoding/json and Python's json silently collapse, so
// that two parsers never see different tensors.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/modelseal/modelseal/pkg/scan"
)

// MaxHeaderSize is the reference implementation's limit on the JSON header.
const MaxHeaderSize = 100_000_000

// maxProblems bounds how many problems one header reports.
const maxProblems = 64

// dtypeBits is the width of each dtype the reference implementation knows.
var dtypeBits = map[string]uint64{
	"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
	"U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32, "C64": 64,
	"F64": 64, "I64": 64, "U64": 64,
}

// Tensor is one entry of a header.
type Tensor struct {
	Name  string
	DType string
	Shape []uint64
	// Begin and End are the data_offsets, relative to the buffer.
	Begin, End uint64
	// Elements is the product of Shape (0 when it overflows).
	Elements uint64
	// Off is the byte offset of the tensor's key in the file.
	Off int64
	// valid is false when a field is missing or malformed.
	valid bool
	// offsets is true when data_offsets parsed, valid or not.
	offsets bool
}

// Problem is a violation of the format that a conforming loader refuses.
type Problem struct {
	// Kind is "duplicate-key", "invalid-tensor", "invalid-metadata" or
	// "unknown-field".
	Kind string
	// Off is the byte offset in the file where it was seen.
	Off int64
	Msg string
}

// Header is a parsed safetensors header.
type Header struct {
	// Len is N, the JSON header's length; the buffer starts at 8+N.
	Len int64
	// Tensors in the order of their keys.
	Tensors []Tensor
	// Metadata is the __metadata__ object (string values only).
	Metadata map[string]string
	// Problems found while parsing and validating, at most maxProblems.
	Problems []Problem
	// Truncated is how many problems were not recorded past maxProblems.
	Truncated int
	// BufferEnd is the highest data offset end among the tensors.
	BufferEnd uint64
	// Parameters is the sum of the tensors' element counts (saturating).
	Parameters uint64
}

func (h *Header) problem(kind string, off int64, format string, args ...any) {
	if len(h.Problems) >= maxProblems {
		h.Truncated++
		return
	}
	h.Problems = append(h.Problems, Problem{Kind: kind, Off: off, Msg: fmt.Sprintf(format, args...)})
}

// DTypes returns the sorted distinct dtypes of the valid tensors.
func (h *Header) DTypes() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range h.Tensors {
		if t.valid && !seen[t.DType] {
			seen[t.DType] = true
			out = append(out, t.DType)
		}
	}
	sort.Strings(out)
	return out
}

func formatErr(off int64, msg string, val any) error {
	return &scan.FormatError{Format: "safetensors", Off: off, Msg: msg, Val: val}
}

// HeaderLen reads and checks the 8-byte header length of a stream of the
// given size.
func HeaderLen(r io.ReaderAt, size int64) (int64, error) {
	if size < 8 {
		return 0, formatErr(0, "file shorter than the 8-byte header length", size)
	}
	var b [8]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return 0, fmt.Errorf("safetensors: reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(b[:])
	switch {
	case n > MaxHeaderSize:
		return 0, formatErr(0, fmt.Sprintf("header length exceeds the limit of %d bytes", MaxHeaderSize), n)
	case int64(n) > size-8:
		return 0, formatErr(0, fmt.Sprintf("header length runs past the end of the %d-byte file", size), n)
	case n < 2:
		return 0, formatErr(0, "header length too small for a JSON object", n)
	}
	return int64(n), nil
}

// ReadHeader reads and validates the header of a safetensors stream of the
// given size. It reads 8+N bytes, never the tensor data. A returned error
// (a *scan.FormatError for malformed input) means the header could not be
// parsed; violations a parser can step over are returned as Problems.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	n, err := HeaderLen(r, size)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, n)
	if _, err := r.ReadAt(raw, 8); err != nil {
		return nil, fmt.Errorf("safetensors: reading the %d-byte header: %w", n, err)
	}
	if !utf8.Valid(raw) {
		i := 0
		for i < len(raw) {
			c, w := utf8.DecodeRune(raw[i:])
			if c == utf8.RuneError && w == 1 {
				break
			}
			i += w
		}
		return nil, formatErr(8+int64(i), "header is not valid UTF-8", nil)
	}
	if raw[0] != '{' {
		return nil, formatErr(8, "header does not start with '{'", string(raw[0]))
	}
	// The reference trims trailing Unicode white space (the padding
	// writers add for alignment) before strict JSON parsing.
	body := bytes.TrimRightFunc(raw, unicode.IsSpace)
	h := &Header{Len: n}
	if err := h.parse(body); err != nil {
		return nil, err
	}
	h.validate()
	return h, nil
}

// decoder wraps a json.Decoder over the header with file offsets.
type decoder struct {
	*json.Decoder
	format string
	base   int64 // file offset of the JSON text
}

func (d decoder) off() int64 { return d.base + d.InputOffset() }

func (d decoder) fail(off int64, msg string) error {
	return &scan.FormatError{Format: d.format, Off: off, Msg: msg}
}

func (d decoder) token() (json.Token, error) {
	t, err := d.Token()
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, d.fail(d.base+se.Offset, "not valid JSON: "+se.Error())
		}
		if err == io.EOF {
			return nil, d.fail(d.off(), "JSON ends early")
		}
		return nil, d.fail(d.off(), "not valid JSON: "+err.Error())
	}
	return t, nil
}

// skip consumes the rest of a value whose first token was t.
func (d decoder) skip(t json.Token) error {
	depth := 0
	for {
		if dl, ok := t.(json.Delim); ok {
			switch dl {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
		var err error
		if t, err = d.token(); err != nil {
			return err
		}
	}
}

func (h *Header) parse(body []byte) error {
	d := decoder{Decoder: json.NewDecoder(bytes.NewReader(body)), format: "safetensors", base: 8}
	d.UseNumber()
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		return formatErr(8, "header is not a JSON object", t)
	}
	seen := map[string]int64{}
	for d.More() {
		off := d.off()
		kt, err := d.token()
		if err != nil {
			return err
		}
		key := kt.(string) // object keys are always strings
		first, dup := seen[key]
		if dup {
			h.problem("duplicate-key", off, "key %q appears twice (first at byte %d); parsers disagree on which one counts", key, first)
		} else {
			seen[key] = off
		}
		if key == "__metadata__" {
			if err := h.parseMetadata(d, off); err != nil {
				return err
			}
			continue
		}
		tensor, err := h.parseTensor(d, key, off)
		if err != nil {
			return err
		}
		if !dup { // the repeat is reported, and only the first is laid out
			h.Tensors = append(h.Tensors, tensor)
		}
	}
	if _, err := d.token(); err != nil { // the closing '}'
		return err
	}
	if t, err := d.Token(); err != io.EOF {
		return formatErr(d.off(), "header has content after the JSON object", fmt.Sprint(t))
	}
	return nil
}

func (h *Header) parseMetadata(d decoder, off int64) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil {
		return nil // "__metadata__": null is accepted
	}
	if t != json.Delim('{') {
		h.problem("invalid-metadata", off, "__metadata__ is not an object")
		return d.skip(t)
	}
	if h.Metadata == nil {
		h.Metadata = map[string]string{}
	}
	seen := map[string]bool{}
	for d.More() {
		koff := d.off()
		kt, err := d.token()
		if err != nil {
			return err
		}
		key := kt.(string)
		if seen[key] {
			h.problem("duplicate-key", koff, "__metadata__ key %q appears twice", key)
		}
		seen[key] = true
		v, err := d.token()
		if err != nil {
			return err
		}
		s, ok := v.(string)
		if !ok {
			h.problem("invalid-metadata", koff, "__metadata__ value of %q is not a string", key)
			if err := d.skip(v); err != nil {
				return err
			}
			continue
		}
		h.Metadata[key] = s
	}
	_, err = d.token()
	return err
}

// parseUint parses a JSON number that must be a non-negative integer that
// fits in 64 bits, as serde's usize does.
func parseUint(t json.Token) (uint64, bool) {
	n, ok := t.(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	return v, err == nil
}

// uints reads an array of unsigned integers; ok is false (the value
// consumed) when it is anything else.
func (d decoder) uints() ([]uint64, bool, error) {
	t, err := d.token()
	if err != nil {
		return nil, false, err
	}
	if t != json.Delim('[') {
		return nil, false, d.skip(t)
	}
	var out []uint64
	ok := true
	for d.More() {
		v, err := d.token()
		if err != nil {
			return nil, false, err
		}
		u, good := parseUint(v)
		if !good {
			ok = false
			if err := d.skip(v); err != nil {
				return nil, false, err
			}
			continue
		}
		out = append(out, u)
	}
	_, err = d.token()
	return out, ok, err
}

func (h *Header) parseTensor(d decoder, name string, off int64) (Tensor, error) {
	tn := Tensor{Name: name, Off: off}
	t, err := d.token()
	if err != nil {
		return tn, err
	}
	if t != json.Delim('{') {
		h.problem("invalid-tensor", off, "tensor %q is not an object", name)
		return tn, d.skip(t)
	}
	var haveDType, haveShape, haveOffsets, bad bool
	seen := map[string]bool{}
	for d.More() {
		foff := d.off()
		kt, err := d.token()
		if err != nil {
			return tn, err
		}
		field := kt.(string)
		if seen[field] {
			h.problem("duplicate-key", foff, "tensor %q has field %q twice", name, field)
			bad = true
		}
		seen[field] = true
		switch field {
		case "dtype":
			v, err := d.token()
			if err != nil {
				return tn, err
			}
			s, ok := v.(string)
			if !ok {
				h.problem("invalid-tensor", foff, "tensor %q: dtype is not a string", name)
				bad = true
				if err := d.skip(v); err != nil {
					return tn, err
				}
				continue
			}
			if _, known := dtypeBits[s]; !known {
				h.problem("invalid-tensor", foff, "tensor %q: unknown dtype %q", name, s)
				bad = true
			}
			tn.DType, haveDType = s, true
		case "shape":
			v, ok, err := d.uints()
			if err != nil {
				return tn, err
			}
			if !ok {
				h.problem("invalid-tensor", foff, "tensor %q: shape is not a list of non-negative integers", name)
				bad = true
				continue
			}
			tn.Shape, haveShape = v, true
		case "data_offsets":
			v, ok, err := d.uints()
			if err != nil {
				return tn, err
			}
			if !ok || len(v) != 2 {
				h.problem("invalid-tensor", foff, "tensor %q: data_offsets is not a pair of non-negative integers", name)
				bad = true
				continue
			}
			tn.Begin, tn.End, haveOffsets = v[0], v[1], true
			tn.offsets = true
		default:
			h.problem("unknown-field", foff, "tensor %q has an unknown field %q", name, field)
			v, err := d.token()
			if err != nil {
				return tn, err
			}
			if err := d.skip(v); err != nil {
				return tn, err
			}
		}
	}
	if _, err := d.token(); err != nil {
		return tn, err
	}
	switch {
	case !haveDType:
		h.problem("invalid-tensor", off, "tensor %q has no dtype", name)
	case !haveShape:
		h.problem("invalid-tensor", off, "tensor %q has no shape", name)
	case !haveOffsets:
		h.problem("invalid-tensor", off, "tensor %q has no data_offsets", name)
	case !bad:
		tn.valid = true
	}
	return tn, nil
}

// validate checks sizes and layout as the reference's Metadata::validate
// does: sorted by offsets, each tensor starts where the previous one ended
// (from 0) and its byte size is prod(shape)*bits/8, with checked math.
func (h *Header) validate() {
	order := make([]int, 0, len(h.Tensors))
	for i := range h.Tensors {
		t := &h.Tensors[i]
		if !t.valid {
			continue
		}
		elems, overflow := uint64(1), false
		for _, d := range t.Shape {
			hi, lo := bits.Mul64(elems, d)
			if hi != 0 {
				overflow = true
				break
			}
			elems = lo
		}
		if overflow {
			h.problem("invalid-tensor", t.Off, "tensor %q: the product of shape %v overflows 64 bits", t.Name, t.Shape)
			t.valid = false
			continue
		}
		t.Elements = elems
		hi, nbits := bits.Mul64(elems, dtypeBits[t.DType])
		switch {
		case hi != 0:
			h.problem("invalid-tensor", t.Off, "tensor %q: its size in bits overflows 64 bits", t.Name)
			t.valid = false
			continue
		case nbits%8 != 0:
			h.problem("invalid-tensor", t.Off, "tensor %q: %d elements of %s do not fill whole bytes", t.Name, elems, t.DType)
			t.valid = false
			continue
		case t.End < t.Begin:
			h.problem("invalid-tensor", t.Off, "tensor %q: data_offsets end %d before begin %d", t.Name, t.End, t.Begin)
			t.valid = false
			continue
		case t.End-t.Begin != nbits/8:
			h.problem("invalid-tensor", t.Off, "tensor %q: data_offsets span %d bytes, but shape %v of %s needs %d", t.Name, t.End-t.Begin, t.Shape, t.DType, nbits/8)
		}
		if h.Parameters+elems < h.Parameters {
			h.Parameters = math.MaxUint64
		} else {
			h.Parameters += elems
		}
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool {
		ta, tb := h.Tensors[order[a]], h.Tensors[order[b]]
		if ta.Begin != tb.Begin {
			return ta.Begin < tb.Begin
		}
		return ta.End < tb.End
	})
	var next uint64
	for _, i := range order {
		t := h.Tensors[i]
		switch {
		case t.Begin > next:
			h.problem("invalid-tensor", t.Off, "tensor %q starts at buffer offset %d, leaving a gap of %d bytes after %d", t.Name, t.Begin, t.Begin-next, next)
		case t.Begin < next:
			h.problem("invalid-tensor", t.Off, "tensor %q at buffer offsets [%d,%d) overlaps the tensor before it, which ends at %d", t.Name, t.Begin, t.End, next)
		}
		next = max(next, t.End)
	}
	for _, t := range h.Tensors {
		if t.offsets {
			next = max(next, t.End)
		}
	}
	h.BufferEnd = next
}
