// Package numpy scans NumPy .npy files by content: the magic string, a
// version (1.0, 2.0 or 3.0), a header that is a Python dict literal naming
// descr, fortran_order and shape, then the array data. Numeric arrays are
// raw bytes that numpy.load never executes: the scanner checks that they
// have the size the header gives. Object arrays (a dtype holding 'O'
// anywhere) are a pickle that numpy.load(allow_pickle=True) unpickles: the
// scanner hands that body to the pickle analyzer. A .npz file is a zip of
// .npy members, which the zip scanner dispatches here.
package numpy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// magic starts every .npy file.
const magic = "\x93NUMPY"

// maxHeader bounds the header the scanner parses. numpy itself refuses
// headers over 10,000 bytes unless allow_pickle is set; a real one is a few
// hundred bytes.
const maxHeader = 1 << 20

// Scanner scans .npy files. The zero value is ready to use.
type Scanner struct{}

// New returns a .npy scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "numpy".
func (*Scanner) Format() string { return "numpy" }

// Match reports whether head starts with the .npy magic string.
func (*Scanner) Match(head []byte, size int64) bool {
	return bytes.HasPrefix(head, []byte(magic))
}

// Header is a parsed .npy header.
type Header struct {
	// Major and Minor are the format version.
	Major, Minor int
	// Descr is the dtype description as numpy wrote it (Python syntax).
	Descr string
	// FortranOrder is the header's fortran_order.
	FortranOrder bool
	// Shape is the array shape.
	Shape []int64
	// ItemSize is the dtype's size in bytes (-1 when unknown).
	ItemSize int64
	// Object is true when the dtype holds Python objects: the body is then a
	// pickle.
	Object bool
	// DataOffset is where the array data (or the pickle) starts.
	DataOffset int64
}

// ReadHeader parses the magic string, version and header of a .npy stream
// of the given size. The returned error is a *scan.FormatError. When the
// dtype alone is not understood, ReadHeader returns the header with
// ItemSize -1 and an error wrapping errUnknownDtype.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	fail := func(off int64, msg string, val any) error {
		return &scan.FormatError{Format: "npy", Off: off, Msg: msg, Val: val}
	}
	var pre [12]byte
	n, _ := r.ReadAt(pre[:], 0)
	if n < 10 || string(pre[:6]) != magic {
		return nil, fail(0, "no .npy magic string and version", nil)
	}
	h := &Header{Major: int(pre[6]), Minor: int(pre[7]), ItemSize: -1}
	var hlen int64
	switch {
	case h.Major == 1 && h.Minor == 0:
		hlen = int64(binary.LittleEndian.Uint16(pre[8:]))
		h.DataOffset = 10
	case (h.Major == 2 || h.Major == 3) && h.Minor == 0:
		if n < 12 {
			return nil, fail(8, "file ends inside the header length", nil)
		}
		hlen = int64(binary.LittleEndian.Uint32(pre[8:]))
		h.DataOffset = 12
	default:
		return nil, fail(6, "unsupported format version", fmt.Sprintf("%d.%d", h.Major, h.Minor))
	}
	if hlen > size-h.DataOffset {
		return nil, fail(8, fmt.Sprintf("header length %d runs past the end of the file (%d bytes)", hlen, size), nil)
	}
	if hlen > maxHeader {
		h.DataOffset += hlen
		return h, fail(8, fmt.Sprintf("header of %d bytes is larger than %d", hlen, maxHeader), nil)
	}
	raw := make([]byte, hlen)
	if _, err := r.ReadAt(raw, h.DataOffset); err != nil {
		return nil, fail(h.DataOffset, "reading the header: "+err.Error(), nil)
	}
	headerOff := h.DataOffset
	h.DataOffset += hlen
	var text string
	if h.Major == 3 {
		if !utf8.Valid(raw) {
			return h, fail(headerOff, "version 3 header is not UTF-8", nil)
		}
		text = string(raw)
	} else {
		text = latin1(raw)
	}
	d, err := parseLiteral(text, h.Major <= 2)
	if err != nil {
		return h, fail(headerOff, "header is not a Python literal: "+err.Error(), nil)
	}
	if d.k != kDict {
		return h, fail(headerOff, "header is not a dict", d.String())
	}
	fields := map[string]*lit{}
	for i := 0; i+1 < len(d.items); i += 2 {
		k := d.items[i]
		if k.k != kStr {
			return h, fail(headerOff, "header has a key that is not a string", k.String())
		}
		fields[k.s] = d.items[i+1] // a repeated key keeps its last value, as in Python
	}
	if len(fields) != 3 || fields["descr"] == nil || fields["fortran_order"] == nil || fields["shape"] == nil {
		return h, fail(headerOff, "header keys are not exactly descr, fortran_order and shape", d.String())
	}
	shape := fields["shape"]
	if shape.k != kTuple {
		return h, fail(headerOff, "shape is not a tuple", shape.String())
	}
	for _, x := range shape.items {
		switch {
		case x.k == kBool: // Python's bool is an int
			h.Shape = append(h.Shape, map[bool]int64{false: 0, true: 1}[x.b])
		case x.k == kInt && !x.big:
			h.Shape = append(h.Shape, x.n)
		default:
			return h, fail(headerOff, "shape is not a tuple of ints", shape.String())
		}
	}
	fo := fields["fortran_order"]
	if fo.k != kBool {
		return h, fail(headerOff, "fortran_order is not a bool", fo.String())
	}
	h.FortranOrder = fo.b
	h.Descr = fields["descr"].String()
	itemsize, object, err := evalDescr(fields["descr"], 0)
	h.Object = object
	if err != nil {
		return h, fmt.Errorf("npy: descr %s: %w", h.Descr, err)
	}
	h.ItemSize = itemsize
	return h, nil
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// Scan parses the header, then checks a numeric array's size or analyses an
// object array's pickle.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	env.Noted(s.Format())
	h, err := ReadHeader(in.R, in.Size)
	if h == nil {
		return err
	}
	if err != nil || h.Object {
		// numpy unpickles the body of an object array. When the header or
		// the dtype is not understood, look at the body anyway: if it is a
		// pickle, its findings are what matter.
		if h.Descr != "" {
			env.SetMeta(in, "numpy.descr", h.Descr)
		}
		perr := s.pickleBody(ctx, in, env, h, err == nil)
		if err != nil {
			return err
		}
		return perr
	}
	env.SetMeta(in, "numpy.descr", h.Descr)
	env.SetMeta(in, "numpy.shape", h.Shape)
	count := int64(1)
	overflow := false
	for _, d := range h.Shape {
		if d < 0 {
			return &scan.FormatError{Format: "npy", Off: -1, Msg: "shape has a negative dimension", Val: d}
		}
		if d != 0 && count > math.MaxInt64/d {
			overflow = true
		}
		count *= d
	}
	want := count * h.ItemSize
	if h.ItemSize != 0 && count > math.MaxInt64/h.ItemSize {
		overflow = true
	}
	have := in.Size - h.DataOffset
	switch {
	case overflow || want > have:
		env.Report(finding.Finding{Rule: "numpy/size-mismatch", Severity: finding.Low, Location: in.At(h.DataOffset),
			Message:  fmt.Sprintf("shape %v of %d-byte items needs more than the %d data bytes present: the array is truncated and numpy refuses to load it", h.Shape, h.ItemSize, have),
			Evidence: map[string]string{"descr": h.Descr, "data_bytes": fmt.Sprint(have)}})
	case want < have:
		env.Report(finding.Finding{Rule: "numpy/size-mismatch", Severity: finding.Medium, Location: in.At(h.DataOffset + want),
			Message:  fmt.Sprintf("%d bytes after the array data, where numpy.load never reads: a hidden payload?", have-want),
			Evidence: map[string]string{"descr": h.Descr, "expected": fmt.Sprint(want), "data_bytes": fmt.Sprint(have)}})
	}
	return nil
}

// pickleBody analyses the bytes after the header as numpy's pickle.load
// would read them. sure says the dtype is known to be object: a body that
// is then not a pickle is an error, while a body of an unknown dtype that
// is not a pickle is simply raw data.
func (s *Scanner) pickleBody(ctx context.Context, in scan.Input, env *scan.Env, h *Header, sure bool) error {
	if h.DataOffset >= in.Size {
		if sure {
			return &scan.FormatError{Format: "npy", Off: h.DataOffset, Msg: "object array has no pickle after its header"}
		}
		return nil
	}
	body := io.NewSectionReader(in.R, h.DataOffset, in.Size-h.DataOffset)
	sum, err := pickle.Analyze(ctx, body, in, h.DataOffset, env, pickle.Options{})
	if errors.Is(err, pickle.ErrNotPickle) {
		if sure {
			return &scan.FormatError{Format: "npy", Off: h.DataOffset, Msg: "object array body is not a pickle"}
		}
		return nil
	}
	env.SetMeta(in, "pickle.imports", sum.Imports)
	if err != nil {
		return fmt.Errorf("npy object array: %w", err)
	}
	return nil
}

// errUnknownDtype marks a descr the scanner cannot size.
var errUnknownDtype = errors.New("dtype not recognised")

// evalDescr computes the item size of a descr and whether it holds
// objects, following numpy.lib.format.descr_to_dtype: a type string, a
// (descr, shape) sub-array, or a list of (name, descr[, shape]) fields.
// object is reported even when an error stops the size computation.
func evalDescr(d *lit, depth int) (itemsize int64, object bool, err error) {
	if depth > maxNesting {
		return 0, false, fmt.Errorf("descr nests deeper than %d", maxNesting)
	}
	switch d.k {
	case kStr:
		return typestr(d.s)
	case kTuple:
		if len(d.items) != 2 {
			return 0, false, fmt.Errorf("%w: sub-array tuple of %d items", errUnknownDtype, len(d.items))
		}
		size, obj, err := evalDescr(d.items[0], depth+1)
		if err != nil {
			return 0, obj, err
		}
		n, err := shapeCount(d.items[1])
		if err != nil {
			return 0, obj, err
		}
		if n != 0 && size > math.MaxInt64/n {
			return 0, obj, errors.New("sub-array size overflows")
		}
		return size * n, obj, nil
	case kList:
		var total int64
		var firstErr error
		for _, f := range d.items {
			if (f.k != kTuple && f.k != kList) || len(f.items) < 2 || len(f.items) > 3 {
				return 0, object, fmt.Errorf("%w: field %s is not (name, descr[, shape])", errUnknownDtype, f.String())
			}
			size, obj, err := evalDescr(f.items[1], depth+1)
			object = object || obj
			if err == nil && len(f.items) == 3 {
				var n int64
				n, err = shapeCount(f.items[2])
				if err == nil && n != 0 && size > math.MaxInt64/n {
					err = errors.New("field size overflows")
				}
				size *= n
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			if total > math.MaxInt64-size {
				return 0, object, errors.New("record size overflows")
			}
			total += size
		}
		return total, object, firstErr
	}
	return 0, false, fmt.Errorf("%w: %s", errUnknownDtype, d.String())
}

// shapeCount multiplies a sub-array shape (an int or a tuple of ints).
func shapeCount(s *lit) (int64, error) {
	if s.k == kInt && !s.big && s.n >= 0 {
		return s.n, nil
	}
	if s.k != kTuple {
		return 0, fmt.Errorf("%w: sub-array shape %s", errUnknownDtype, s.String())
	}
	n := int64(1)
	for _, x := range s.items {
		if x.k != kInt || x.big || x.n < 0 {
			return 0, fmt.Errorf("%w: sub-array shape %s", errUnknownDtype, s.String())
		}
		if x.n != 0 && n > math.MaxInt64/x.n {
			return 0, errors.New("sub-array shape overflows")
		}
		n *= x.n
	}
	return n, nil
}

// names are the dtype names numpy.dtype accepts besides type strings.
var names = map[string]int64{
	"bool": 1, "bool_": 1, "int8": 1, "uint8": 1, "byte": 1, "ubyte": 1,
	"int16": 2, "uint16": 2, "short": 2, "ushort": 2, "float16": 2, "half": 2,
	"int32": 4, "uint32": 4, "intc": 4, "uintc": 4, "float32": 4, "single": 4,
	"int64": 8, "uint64": 8, "int": 8, "int_": 8, "uint": 8, "intp": 8, "uintp": 8, "long": 8, "ulong": 8,
	"longlong": 8, "ulonglong": 8, "float64": 8, "float": 8, "double": 8, "float_": 8, "complex64": 8, "csingle": 8,
	"complex128": 16, "complex": 16, "cdouble": 16, "complex_": 16, "longdouble": 16, "float128": 16, "clongdouble": 32, "complex256": 32,
	"datetime64": 8, "timedelta64": 8,
}

// typestr sizes a numpy type string such as "<f4", "|O", "<U10" or "<M8[ns]".
func typestr(s string) (int64, bool, error) {
	if s == "object" || s == "object_" || s == "O" {
		return 8, true, nil
	}
	if n, ok := names[s]; ok {
		return n, false, nil
	}
	t := s
	if len(t) > 0 && (t[0] == '<' || t[0] == '>' || t[0] == '|' || t[0] == '=' || t[0] == '!') {
		t = t[1:]
	}
	if i := bytes.IndexByte([]byte(t), '['); i >= 0 && t[len(t)-1] == ']' && (t[0] == 'M' || t[0] == 'm') {
		t = t[:i] // datetime unit
	}
	if t == "" {
		return 0, false, fmt.Errorf("%w: %q", errUnknownDtype, s)
	}
	kind, digits := t[0], t[1:]
	var n int64 = -1
	if digits != "" {
		for _, c := range []byte(digits) {
			if c < '0' || c > '9' {
				return 0, false, fmt.Errorf("%w: %q", errUnknownDtype, s)
			}
		}
		if len(digits) > 15 {
			return 0, false, fmt.Errorf("%w: %q has a huge size", errUnknownDtype, s)
		}
		fmt.Sscan(digits, &n)
	}
	fixed := func(def int64, allowed ...int64) (int64, bool, error) {
		if n < 0 {
			return def, false, nil
		}
		for _, a := range allowed {
			if n == a {
				return n, false, nil
			}
		}
		return 0, false, fmt.Errorf("%w: %q", errUnknownDtype, s)
	}
	switch kind {
	case 'O':
		if n < 0 || n == 8 || n == 4 {
			return 8, true, nil
		}
	case '?':
		return fixed(1, 1)
	case 'b':
		return fixed(1, 1) // "b" is int8, "b1" is bool
	case 'B':
		return fixed(1)
	case 'h', 'H':
		return fixed(2)
	case 'i', 'u':
		return fixed(4, 1, 2, 4, 8)
	case 'I':
		return fixed(4)
	case 'l', 'L', 'q', 'Q', 'p', 'P', 'n', 'N':
		return fixed(8)
	case 'e':
		return fixed(2)
	case 'f':
		return fixed(4, 2, 4, 8, 16)
	case 'd':
		return fixed(8)
	case 'g':
		return fixed(16)
	case 'F':
		return fixed(8)
	case 'D':
		return fixed(16)
	case 'G':
		return fixed(32)
	case 'c':
		return fixed(1, 8, 16, 32) // "c" alone is a 1-byte string
	case 'M', 'm':
		return fixed(8, 8)
	case 'S', 'a', 'V':
		if n < 0 {
			n = 0
		}
		return n, false, nil
	case 'U':
		if n < 0 {
			n = 0
		}
		return n * 4, false, nil
	}
	return 0, false, fmt.Errorf("%w: %q", errUnknownDtype, s)
}
