package onnx

import (
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/scan"
)

// window is how many bytes the reader fetches at a time.
const window = 64 << 10

// wire reads protobuf fields from an io.ReaderAt through a small window,
// so that large tensors' raw_data is skipped, never read.
type wire struct {
	r      io.ReaderAt
	size   int64
	buf    []byte
	bufOff int64
}

func fail(off int64, msg string, val any) error {
	return &scan.FormatError{Format: "onnx", Off: off, Msg: msg, Val: val}
}

// at returns up to n bytes at off, not past end.
func (w *wire) at(off, end int64, n int) ([]byte, error) {
	n = int(min(int64(n), end-off))
	if n <= 0 {
		return nil, nil
	}
	if off < w.bufOff || off+int64(n) > w.bufOff+int64(len(w.buf)) {
		m := min(int64(max(window, n)), w.size-off)
		if int64(cap(w.buf)) < m {
			w.buf = make([]byte, m)
		}
		w.buf = w.buf[:m]
		if _, err := w.r.ReadAt(w.buf, off); err != nil && err != io.EOF {
			w.buf = w.buf[:0]
			return nil, fmt.Errorf("onnx: reading at byte %d: %w", off, err)
		}
		w.bufOff = off
	}
	i := off - w.bufOff
	return w.buf[i : i+int64(n)], nil
}

// field is one decoded field: a varint or fixed value in V, or a
// length-delimited value in [Start, End).
type field struct {
	Num        protowire.Number
	Type       protowire.Type
	V          uint64
	Start, End int64
	At         int64 // offset of the tag
}

// fields calls fn for each field of the message in [start, end).
func (w *wire) fields(start, end int64, fn func(f field) error) error {
	off := start
	for off < end {
		b, err := w.at(off, end, 20)
		if err != nil {
			return err
		}
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fail(off, "invalid field tag", protowire.ParseError(n).Error())
		}
		f := field{Num: num, Type: typ, At: off}
		off += int64(n)
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fail(off, "invalid varint", protowire.ParseError(n).Error())
			}
			f.V = v
			off += int64(n)
		case protowire.Fixed32Type:
			if end-off < 4 {
				return fail(off, "message ends inside a fixed32 field", int(num))
			}
			off += 4
		case protowire.Fixed64Type:
			if end-off < 8 {
				return fail(off, "message ends inside a fixed64 field", int(num))
			}
			off += 8
		case protowire.BytesType:
			l, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fail(off, "invalid length", protowire.ParseError(n).Error())
			}
			off += int64(n)
			if l > uint64(end-off) {
				return fail(off, fmt.Sprintf("field %d's length runs past the end of its message (%d bytes left)", num, end-off), l)
			}
			f.Start, f.End = off, off+int64(l)
			off = f.End
		default:
			return fail(f.At, "unsupported wire type (groups are not used by ONNX)", int(typ))
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// str reads a length-delimited field as a string of at most limit bytes
// (longer ones are cut, with "..." appended).
func (w *wire) str(f field, limit int) (string, error) {
	if f.Type != protowire.BytesType {
		return "", nil
	}
	n := min(f.End-f.Start, int64(limit))
	b := make([]byte, 0, n)
	for off := f.Start; off < f.Start+n; {
		c, err := w.at(off, f.Start+n, window)
		if err != nil {
			return "", err
		}
		b = append(b, c...)
		off += int64(len(c))
	}
	if f.End-f.Start > int64(limit) {
		return string(b) + "...", nil
	}
	return string(b), nil
}
