package pickle

import (
	"errors"
	"fmt"
	"io"
)

// maxLine bounds a text-mode operand (GLOBAL, INT, STRING, ...). CPython has
// no limit, but no real pickle has a line this long.
const maxLine = 1 << 20

// errTruncated is returned when the stream ends inside an opcode.
var errTruncated = errors.New("stream ends inside an opcode (truncated)")

// reader is a small buffered reader that counts its position and skips large
// operands without reading them when the source can seek, so tensor bytes
// inside a pickle cost no memory and, for files, no I/O.
type reader struct {
	src    io.Reader
	seeker io.Seeker
	buf    []byte
	r, w   int
	pos    int64 // bytes consumed by the decoder
	left   int64 // bytes known to remain in the source after buf, or -1
	err    error
}

func newReader(src io.Reader, size int64) *reader {
	n := 64 << 10
	if size >= 0 && size < int64(n) {
		n = max(int(size), 16) // a small stream needs no large buffer
	}
	rd := &reader{src: src, buf: make([]byte, n), left: -1}
	if s, ok := src.(io.Seeker); ok && size >= 0 {
		rd.seeker = s
	}
	if size >= 0 {
		rd.left = size
	}
	return rd
}

// remaining returns the bytes left in the stream, or -1 when unknown.
func (rd *reader) remaining() int64 {
	if rd.left < 0 {
		return -1
	}
	return rd.left + int64(rd.w-rd.r)
}

func (rd *reader) fill() {
	if rd.err != nil {
		return
	}
	if rd.r > 0 {
		copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
	}
	n, err := rd.src.Read(rd.buf[rd.w:])
	rd.w += n
	if rd.left >= 0 {
		rd.left -= int64(n)
	}
	if err != nil {
		rd.err = err
	}
}

// byte reads one byte.
func (rd *reader) byte() (byte, error) {
	for rd.r == rd.w {
		if rd.err != nil {
			return 0, rd.eofErr()
		}
		rd.fill()
	}
	b := rd.buf[rd.r]
	rd.r++
	rd.pos++
	return b, nil
}

func (rd *reader) eofErr() error {
	if rd.err == io.EOF {
		return io.EOF
	}
	return rd.err
}

// peekEOF reports whether the stream is at its end.
func (rd *reader) atEOF() bool {
	for rd.r == rd.w {
		if rd.err != nil {
			return true
		}
		rd.fill()
	}
	return false
}

// bytes reads exactly n bytes (n <= len(rd.buf)) and returns a slice valid
// until the next call.
func (rd *reader) small(n int) ([]byte, error) {
	for rd.w-rd.r < n {
		if rd.err != nil {
			return nil, errTruncated
		}
		rd.fill()
	}
	b := rd.buf[rd.r : rd.r+n]
	rd.r += n
	rd.pos += int64(n)
	return b, nil
}

// read reads n bytes into a new slice. The caller bounds n.
func (rd *reader) read(n int64) ([]byte, error) {
	if r := rd.remaining(); r >= 0 && n > r {
		return nil, fmt.Errorf("operand of %d bytes but only %d remain: %w", n, r, errTruncated)
	}
	out := make([]byte, 0, min(n, 1<<20))
	for int64(len(out)) < n {
		if rd.r == rd.w {
			if rd.err != nil {
				return nil, errTruncated
			}
			rd.fill()
			continue
		}
		k := min(int64(rd.w-rd.r), n-int64(len(out)))
		out = append(out, rd.buf[rd.r:rd.r+int(k)]...)
		rd.r += int(k)
		rd.pos += k
	}
	return out, nil
}

// skip discards n bytes, seeking past them when the source allows.
func (rd *reader) skip(n int64) error {
	if r := rd.remaining(); r >= 0 && n > r {
		return fmt.Errorf("operand of %d bytes but only %d remain: %w", n, r, errTruncated)
	}
	buffered := int64(rd.w - rd.r)
	if n <= buffered {
		rd.r += int(n)
		rd.pos += n
		return nil
	}
	rd.pos += buffered
	n -= buffered
	rd.r, rd.w = 0, 0
	if rd.seeker != nil && rd.err == nil {
		if _, err := rd.seeker.Seek(n, io.SeekCurrent); err == nil {
			rd.pos += n
			rd.left -= n
			return nil
		}
	}
	for n > 0 {
		if rd.err != nil {
			return errTruncated
		}
		rd.fill()
		k := min(int64(rd.w), n)
		rd.r += int(k)
		rd.pos += k
		n -= k
		if rd.r == rd.w {
			rd.r, rd.w = 0, 0
		}
	}
	return nil
}

// line reads up to and including '\n' and returns the line without it.
func (rd *reader) line() ([]byte, error) {
	var out []byte
	for {
		if rd.r == rd.w {
			if rd.err != nil {
				return nil, errTruncated
			}
			rd.fill()
			continue
		}
		chunk := rd.buf[rd.r:rd.w]
		for i, c := range chunk {
			if c == '\n' {
				out = append(out, chunk[:i]...)
				rd.r += i + 1
				rd.pos += int64(i + 1)
				return out, nil
			}
		}
		out = append(out, chunk...)
		rd.pos += int64(len(chunk))
		rd.r = rd.w
		if len(out) > maxLine {
			return nil, fmt.Errorf("text operand longer than %d bytes", maxLine)
		}
	}
}
