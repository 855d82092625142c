package gguf

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/modelseal/modelseal/pkg/scan"
)

// window is how many bytes the reader fetches at a time.
const window = 64 << 10

// reader reads little-endian GGUF fields from an io.ReaderAt through a
// small window, bounding every length by the bytes that remain.
type reader struct {
	r      io.ReaderAt
	size   int64
	off    int64
	buf    []byte
	bufOff int64
	wide   bool // v2+: 64-bit counts and lengths
}

func (r *reader) fail(off int64, msg string, val any) error {
	return &scan.FormatError{Format: "gguf", Off: off, Msg: msg, Val: val}
}

func (r *reader) left() int64 { return r.size - r.off }

// peek returns the next n bytes (n <= window) without consuming them.
func (r *reader) peek(n int, what string) ([]byte, error) {
	if int64(n) > r.left() {
		return nil, r.fail(r.off, fmt.Sprintf("file ends inside %s (%d bytes needed, %d left)", what, n, r.left()), nil)
	}
	if r.off < r.bufOff || r.off+int64(n) > r.bufOff+int64(len(r.buf)) {
		m := min(int64(window), r.left())
		if cap(r.buf) < int(m) {
			r.buf = make([]byte, m)
		}
		r.buf = r.buf[:m]
		if _, err := r.r.ReadAt(r.buf, r.off); err != nil && err != io.EOF {
			r.buf = r.buf[:0]
			return nil, fmt.Errorf("gguf: reading at byte %d: %w", r.off, err)
		}
		r.bufOff = r.off
	}
	i := r.off - r.bufOff
	return r.buf[i : i+int64(n)], nil
}

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n > window {
		if int64(n) > r.left() {
			return nil, r.fail(r.off, fmt.Sprintf("file ends inside %s (%d bytes needed, %d left)", what, n, r.left()), nil)
		}
		b := make([]byte, n)
		if _, err := r.r.ReadAt(b, r.off); err != nil {
			return nil, fmt.Errorf("gguf: reading %s at byte %d: %w", what, r.off, err)
		}
		r.off += int64(n)
		return b, nil
	}
	b, err := r.peek(n, what)
	if err != nil {
		return nil, err
	}
	r.off += int64(n)
	return b, nil
}

func (r *reader) skip(n uint64, what string) error {
	if n > uint64(r.left()) {
		return r.fail(r.off, fmt.Sprintf("%s of %d bytes runs past the end of the file (%d bytes left)", what, n, r.left()), nil)
	}
	r.off += int64(n)
	return nil
}

func (r *reader) u32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (r *reader) u64(what string) (uint64, error) {
	b, err := r.bytes(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// count reads a count or length: 32 bits in GGUF v1, 64 after.
func (r *reader) count(what string) (uint64, error) {
	if r.wide {
		return r.u64(what)
	}
	n, err := r.u32(what)
	return uint64(n), err
}

// lenSize is the size of a count or length field.
func (r *reader) lenSize() int64 {
	if r.wide {
		return 8
	}
	return 4
}

// str reads a string. It returns the text only when it is at most limit
// bytes (skipping it otherwise) and the file offset of its first byte.
func (r *reader) str(limit int, what string) (s string, at int64, long bool, err error) {
	n, err := r.count(what + " length")
	if err != nil {
		return "", 0, false, err
	}
	at = r.off
	if n > uint64(r.left()) {
		return "", at, false, r.fail(at-r.lenSize(), fmt.Sprintf("%s length runs past the end of the file (%d bytes left)", what, r.left()), n)
	}
	if n > uint64(limit) {
		return "", at, true, r.skip(n, what)
	}
	b, err := r.bytes(int(n), what)
	return string(b), at, false, err
}
