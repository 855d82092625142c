// Package joblib scans compressed joblib files and, more generally, any
// single compressed stream: the compressors joblib registers in
// joblib/compressor.py (zlib '\x78', gzip '\x1f\x8b', bz2 'BZ', lzma
// '\x5d\x00', xz '\xfd7zXZ', lz4 '\x04\x22\x4d\x18'), joblib's pre-0.10
// "ZF" files, and zstd. A stream whose content is a pickle is decompressed
// on the fly into the pickle analyzer in joblib mode (array bytes after each
// NumpyArrayWrapper are skipped), never held whole; any other content (a
// tar in a gzip, a zip, a protocol-0 pickle) goes back to the registry as a
// member. Uncompressed joblib files are plain pickles, which the pickle
// scanner recognises by their NumpyArrayWrapper.
package joblib

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// Codec names a compression format.
type Codec string

// The codecs the scanner reads.
const (
	Zlib   Codec = "zlib"
	Gzip   Codec = "gzip"
	Bzip2  Codec = "bz2"
	LZMA   Codec = "lzma"
	XZ     Codec = "xz"
	LZ4    Codec = "lz4"
	Zstd   Codec = "zstd"
	ZFile  Codec = "joblib-zfile" // joblib < 0.10: "ZF", hex length, zlib
	maxDic       = 1 << 28        // largest LZMA/xz dictionary accepted
)

// zfileHeader is len("ZF") + len(hex(2**64)), joblib's _MAX_LEN.
const zfileHeader = 2 + 19

// Detect returns the codec whose magic bytes start head, in joblib's
// order (numpy_pickle_utils._detect_compressor), or "".
func Detect(head []byte) Codec {
	switch {
	case bytes.HasPrefix(head, []byte("ZF")):
		return ZFile
	case len(head) >= 2 && head[0] == 0x78 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 && head[1]&0x20 == 0:
		// joblib checks only '\x78'; a valid zlib header (FCHECK, no
		// preset dictionary) keeps the scanner from claiming other data.
		return Zlib
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte("BZh")):
		return Bzip2
	case bytes.HasPrefix(head, []byte{0x5d, 0x00}):
		return LZMA
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return XZ
	case bytes.HasPrefix(head, []byte{0x04, 0x22, 0x4d, 0x18}):
		return LZ4
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	}
	return ""
}

// Scanner scans compressed streams. The zero value is ready to use.
type Scanner struct{}

// New returns a compressed-stream scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "compressed"; the codec and the content's format ("joblib",
// "pickle", or whatever the registry finds inside) are noted separately.
func (*Scanner) Format() string { return "compressed" }

// Match reports whether head starts with a known compression magic.
func (*Scanner) Match(head []byte, size int64) bool { return Detect(head) != "" }

// Open returns a reader of the decompressed content of in, whose first
// bytes are those of codec c.
func Open(c Codec, r io.Reader) (io.ReadCloser, error) {
	switch c {
	case Zlib:
		return zlib.NewReader(r)
	case Gzip:
		return gzip.NewReader(r)
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	case LZMA:
		lr, err := lzma.ReaderConfig{DictCap: maxDic}.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(lr), nil
	case XZ:
		// The xz package allocates each block's dictionary as its header
		// says, up to 4 GiB: check the first block before opening.
		br := bufio.NewReader(r)
		head, _ := br.Peek(12 + 1024)
		if dict, ok := xzDictSize(head); ok && dict > maxDic {
			return nil, fmt.Errorf("xz dictionary of %d bytes is larger than %d", dict, maxDic)
		}
		xr, err := xz.ReaderConfig{}.NewReader(br)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(xr), nil
	case LZ4:
		return io.NopCloser(lz4.NewReader(r)), nil
	case Zstd:
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxDic))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case ZFile:
		var hdr [zfileHeader + 1]byte
		n, err := io.ReadFull(r, hdr[:])
		if n < zfileHeader {
			return nil, fmt.Errorf("reading the ZF header: %w", err)
		}
		field := strings.TrimSpace(string(hdr[2:zfileHeader]))
		if _, perr := strconv.ParseUint(strings.TrimPrefix(field, "0x"), 16, 64); perr != nil {
			return nil, fmt.Errorf("ZF header length %q is not hexadecimal", field)
		}
		rest := r
		if n == len(hdr) && hdr[zfileHeader] != ' ' { // python 2 files have one more space
			rest = io.MultiReader(bytes.NewReader(hdr[zfileHeader:]), r)
		}
		return zlib.NewReader(rest)
	}
	return nil, fmt.Errorf("unknown codec %q", c)
}

// Scan decompresses the input and scans its content.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	head := make([]byte, min(in.Size, 32))
	if _, err := in.R.ReadAt(head, 0); err != nil {
		return fmt.Errorf("reading the magic bytes: %w", err)
	}
	codec := Detect(head)
	if codec == "" {
		return scan.ErrNotFormat
	}
	dec, err := Open(codec, io.NewSectionReader(in.R, 0, in.Size))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || in.Size < 64 {
			// A magic number and little else: not a compressed stream.
			return scan.ErrNotFormat
		}
		return fmt.Errorf("%s: %w", codec, err)
	}
	defer func() { dec.Close() }()
	member := "<" + string(codec) + ">"
	child := in
	child.Loc = in.At(-1)
	child.Loc.Members = append(child.Loc.Members, member)
	child.Name = member
	child.Depth = in.Depth + 1
	child.R = nil
	child.Size = -1

	m := &meter{r: dec, env: env, loc: child.At(-1), limit: ratioLimit(env, in.Size)}
	br := bufio.NewReaderSize(m, 64<<10)
	peek, _ := br.Peek(scan.HeadSize)
	if len(peek) == 0 && m.err != nil {
		// Nothing decompresses: the magic bytes were a coincidence.
		return scan.ErrNotFormat
	}
	env.Noted(string(codec))
	if len(peek) > 0 && peek[0] == 0x80 && !looksLikeTar(peek) {
		// A pickle (joblib writes protocol 2 or later): analyse it as it
		// decompresses, charging the bytes to the budget.
		m.startCharging()
		sum, err := pickle.Analyze(ctx, br, child, 0, env, pickle.Options{Joblib: true})
		if !errors.Is(err, pickle.ErrNotPickle) {
			if sum.Joblib {
				env.Noted("joblib")
			} else {
				env.Noted("pickle")
			}
			env.SetMeta(child, "pickle.imports", sum.Imports)
			switch {
			case m.stopped:
				return nil // the budget or ratio finding is reported
			case m.err != nil:
				return fmt.Errorf("%s: decompressing after %d bytes (what came before was scanned): %w", codec, m.n, m.err)
			case err != nil:
				return fmt.Errorf("%s stream: %w", codec, err)
			}
			return nil
		}
		// Not a pickle after all: start again for the registry.
		dec.Close()
		if dec, err = Open(codec, io.NewSectionReader(in.R, 0, in.Size)); err != nil {
			return fmt.Errorf("%s: %w", codec, err)
		}
		m = &meter{r: dec, env: env, loc: child.At(-1), limit: ratioLimit(env, in.Size)}
		br = bufio.NewReader(m)
	}
	// Any other content goes back to the registry as one member, which
	// charges it to the budget. A decompression error ends the stream: the
	// bytes before it are scanned, and the error is recorded.
	if err := env.MemberStream(ctx, in, member, br, in.Size); err != nil {
		return err
	}
	if m.err != nil {
		return fmt.Errorf("%s: decompressing after %d bytes (the bytes before the error were scanned): %w", codec, m.n, m.err)
	}
	return nil
}

// ratioLimit is the most a stream of size compressed bytes may expand to
// under the ratio limit; one byte more trips the check.
func ratioLimit(env *scan.Env, size int64) int64 {
	r := env.Limits.MaxRatio
	if r <= 0 || size <= 0 || size > (1<<62)/r {
		return 1 << 62
	}
	return size*r + 1
}

// meter counts decompressed bytes, charges them to the budget, stops at the
// ratio limit, and turns decompression errors into a clean end of stream
// (recording them) so the analyzer judges what came before.
type meter struct {
	r        io.Reader
	env      *scan.Env
	loc      finding.Location
	limit    int64
	n        int64
	err      error
	stopped  bool
	charging bool
}

// startCharging charges the bytes read so far and every later read to the
// budget. Past the budget the stream ends; the bytes already decompressed
// are still analysed.
func (m *meter) startCharging() {
	m.charging = true
	if m.n > 0 && !m.env.Charge(m.loc, m.n) {
		m.stopped = true
	}
}

func (m *meter) Read(p []byte) (int, error) {
	if m.stopped || m.err != nil {
		return 0, io.EOF
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	if m.n >= m.limit {
		m.stopped = true
		m.env.Report(finding.Finding{Rule: "archive/compression-ratio", Severity: finding.High, Location: m.loc,
			Message: fmt.Sprintf("stream expands past %d bytes, beyond the compression ratio limit of %d:1 (decompression bomb?); the rest was not scanned", m.limit-1, m.env.Limits.MaxRatio)})
		return 0, io.EOF
	}
	if m.charging && n > 0 && !m.env.Charge(m.loc, int64(n)) {
		m.stopped = true // these bytes are still analysed; the stream ends after them
		return n, nil
	}
	if err != nil && err != io.EOF {
		m.err = err
		err = io.EOF
	}
	return n, err
}

// xzDictSize reads the LZMA2 dictionary size from the first block header
// of an xz stream (xz-file-format 3.1.4, 5.3.1).
func xzDictSize(b []byte) (uint64, bool) {
	const streamHeader = 12
	if len(b) < streamHeader+2 || b[streamHeader] == 0 {
		return 0, false // no block
	}
	size := (int(b[streamHeader]) + 1) * 4
	if len(b) < streamHeader+size {
		return 0, false
	}
	h := b[streamHeader+1 : streamHeader+size]
	flags := h[0]
	h = h[1:]
	varint := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && i < len(h); i++ {
			v |= uint64(h[i]&0x7f) << (7 * i)
			if h[i]&0x80 == 0 {
				h = h[i+1:]
				return v, true
			}
		}
		return 0, false
	}
	if flags&0x40 != 0 {
		if _, ok := varint(); !ok {
			return 0, false
		}
	}
	if flags&0x80 != 0 {
		if _, ok := varint(); !ok {
			return 0, false
		}
	}
	for range int(flags&3) + 1 {
		id, ok1 := varint()
		n, ok2 := varint()
		if !ok1 || !ok2 || n > uint64(len(h)) {
			return 0, false
		}
		props := h[:n]
		h = h[n:]
		if id == 0x21 && len(props) == 1 {
			code := uint64(props[0] & 0x3f)
			if code >= 40 {
				return 1<<32 - 1, true
			}
			return (2 | code&1) << (code/2 + 11), true
		}
	}
	return 0, false
}

// looksLikeTar reports a POSIX or GNU tar header ("ustar" at byte 257).
func looksLikeTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}
