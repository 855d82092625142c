package tfsavedmodel

import (
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/scan"
)

// src reads protobuf fields from an io.ReaderAt through a small window, so
// a large graph is walked without loading it.
type src struct {
	r      io.ReaderAt
	size   int64
	format string
	buf    []byte
	bufOff int64
}

const window = 64 << 10

func newSrc(r io.ReaderAt, size int64, format string) *src {
	return &src{r: r, size: size, format: format, bufOff: -1}
}

func (s *src) fail(off int64, msg string, val any) error {
	return &scan.FormatError{Format: s.format, Off: off, Msg: msg, Val: val}
}

// bytes returns n bytes at off (n bounded by the caller; at most the
// window unless the caller checked a larger length against the file).
func (s *src) bytes(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || int64(n) > s.size-off {
		return nil, s.fail(off, fmt.Sprintf("%d bytes run past the end of the stream", n), nil)
	}
	if s.bufOff >= 0 && off >= s.bufOff && off+int64(n) <= s.bufOff+int64(len(s.buf)) {
		return s.buf[off-s.bufOff : off-s.bufOff+int64(n)], nil
	}
	if n > window {
		b := make([]byte, n)
		if m, err := s.r.ReadAt(b, off); m < n {
			return nil, s.fail(off, fmt.Sprintf("reading %d bytes: %v", n, err), nil)
		}
		return b, nil
	}
	want := int(min(int64(window), s.size-off))
	if cap(s.buf) < window {
		s.buf = make([]byte, window)
	}
	s.buf = s.buf[:want]
	if m, err := s.r.ReadAt(s.buf, off); m < want {
		s.bufOff = -1
		return nil, s.fail(off, fmt.Sprintf("reading %d bytes: %v", want, err), nil)
	}
	s.bufOff = off
	return s.buf[:n], nil
}

// field is one decoded protobuf field: a varint (or fixed) value, or the
// stream range of a length-delimited value.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	off int64 // start of the field's tag
	at  int64 // start of a length-delimited value
	n   int64 // its length
}

// fields calls fn for every field of the message in [off, end).
func (s *src) fields(off, end int64, fn func(f field) error) error {
	for off < end {
		hdr, err := s.bytes(off, int(min(20, end-off)))
		if err != nil {
			return err
		}
		num, typ, n := protowire.ConsumeTag(hdr)
		if n < 0 {
			return s.fail(off, "invalid protobuf tag", nil)
		}
		f := field{num: num, typ: typ, off: off}
		p := n
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(hdr[p:])
			if m < 0 {
				return s.fail(off, "invalid varint", nil)
			}
			f.v, p = v, p+m
		case protowire.Fixed32Type:
			if len(hdr)-p < 4 {
				return s.fail(off, "truncated fixed32", nil)
			}
			p += 4
		case protowire.Fixed64Type:
			if len(hdr)-p < 8 {
				return s.fail(off, "truncated fixed64", nil)
			}
			p += 8
		case protowire.BytesType:
			l, m := protowire.ConsumeVarint(hdr[p:])
			if m < 0 {
				return s.fail(off, "invalid length", nil)
			}
			p += m
			if l > uint64(end-off-int64(p)) {
				return s.fail(off, "field length runs past its message", l)
			}
			f.at, f.n = off+int64(p), int64(l)
			p += int(l)
		default:
			return s.fail(off, "unsupported wire type", typ)
		}
		if err := fn(f); err != nil {
			return err
		}
		off += int64(p)
	}
	return nil
}

// str reads a length-delimited field as a string, at most limit bytes
// (longer values are cut).
func (s *src) str(f field, limit int) (string, error) {
	n := int(min(f.n, int64(limit)))
	b, err := s.bytes(f.at, n)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
