// Package zipscan scans zip archives: plain zips, PyTorch zip checkpoints,
// NumPy .npz files and anything else built on zip. Every member listed in
// the central directory is handed back to the registry by content, including
// members with duplicate names, flag bits that loaders ignore, names that
// disagree with their local header and data that fails its CRC-32: PyTorch
// reads all of those, so the scanner reads them too, and reports each trick
// as a finding of its own.
package zipscan

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"regexp"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/internal/pathcheck"
)

// Zip general-purpose flag bits that change how a member's data must be
// read, and that PyTorch ignores.
const (
	flagEncrypted       = 0x1
	flagDataDescriptor  = 0x8
	flagPatched         = 0x20
	flagStrongEncrypted = 0x40
	suspiciousFlags     = flagEncrypted | flagPatched | flagStrongEncrypted
)

// Compression methods the scanner can read.
const (
	methodStore   = 0
	methodDeflate = 8
	methodBzip2   = 12
	methodLZMA    = 14
	methodZstd    = 93
)

const (
	localHeaderLen = 30
	localHeaderSig = 0x04034b50
	// zipCryptoHeader is the length of the traditional encryption header
	// that precedes an encrypted member's data.
	zipCryptoHeader = 12
)

// Scanner scans zip archives. The zero value is ready to use.
type Scanner struct{}

// New returns a zip scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "zip".
func (*Scanner) Format() string { return "zip" }

// Match reports whether head starts with a zip local file header, an empty
// archive's end record, or the spanned-archive marker. PyTorch and NumPy
// check the same leading bytes.
func (*Scanner) Match(head []byte, size int64) bool {
	if len(head) < 4 || head[0] != 'P' || head[1] != 'K' {
		return false
	}
	switch {
	case head[2] == 3 && head[3] == 4, head[2] == 5 && head[3] == 6, head[2] == 7 && head[3] == 8:
		return true
	}
	return false
}

// headerRecorder remembers where archive/zip last read a local file header:
// File.DataOffset reads exactly the 30 fixed bytes of the member's local
// header at its offset, which the package does not otherwise expose.
type headerRecorder struct {
	r       io.ReaderAt
	lastOff int64
}

func (h *headerRecorder) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == localHeaderLen {
		h.lastOff = off
	}
	return h.r.ReadAt(p, off)
}

// Scan lists the central directory and scans every member.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	rec := &headerRecorder{r: in.R, lastOff: -1}
	zr, err := zip.NewReader(rec, in.Size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("zip: reading the central directory: %w", err)
	}
	env.Noted(s.Format())
	torchDirs := torchFolders(zr.File)
	if len(torchDirs) > 0 {
		env.Noted("pytorch-zip")
	} else if isNPZ(zr.File) {
		env.Noted("npz")
	}
	z := &zipScan{in: in, env: env, rec: rec, torchDirs: torchDirs, seen: map[string]int{}}
	for i, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := z.member(ctx, i, f); err != nil {
			return err
		}
	}
	return nil
}

// zipScan is the state of one archive's scan.
type zipScan struct {
	in        scan.Input
	env       *scan.Env
	rec       *headerRecorder
	torchDirs map[string]bool
	seen      map[string]int // name -> index of its first entry
}

// memberLoc is the location of member name inside the archive.
func (z *zipScan) memberLoc(name string) finding.Location {
	l := z.in.At(-1)
	l.Members = append(l.Members, name)
	return l
}

func (z *zipScan) report(rule string, sev finding.Severity, name string, msg string, ev map[string]string) {
	z.env.Report(finding.Finding{Rule: rule, Severity: sev, Location: z.memberLoc(name), Message: msg, Evidence: ev})
}

// member checks and scans entry i of the central directory. It returns an
// error only when the context ends.
func (z *zipScan) member(ctx context.Context, i int, f *zip.File) error {
	name := f.Name
	display := name
	if first, dup := z.seen[name]; dup {
		display = fmt.Sprintf("%s [entry %d]", name, i+1)
		z.report("zip/duplicate-name", finding.Medium, display,
			fmt.Sprintf("entries %d and %d are both named %q; loaders disagree on which one they read, so both are scanned", first+1, i+1, name),
			map[string]string{"name": name, "first_entry": fmt.Sprint(first + 1), "entry": fmt.Sprint(i + 1)})
	} else {
		z.seen[name] = i
	}
	if why := pathcheck.ArchiveName(name); why != "" {
		z.report("zip/unsafe-name", finding.High, display, fmt.Sprintf("member name %q %s; extracting it would write outside the target folder", name, why),
			map[string]string{"name": name})
	}
	if bits := f.Flags & suspiciousFlags; bits != 0 {
		z.report("zip/flag-bits", finding.Low, display,
			fmt.Sprintf("member has general-purpose flag bits 0x%x (%s); PyTorch ignores them and reads the data, so it is scanned as stored", bits, flagNames(bits)),
			map[string]string{"flags": fmt.Sprintf("0x%04x", f.Flags)})
	}

	z.rec.lastOff = -1
	dataOff, err := f.DataOffset()
	if err != nil {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: reading its local header: %w", name, err))
		return nil
	}
	z.checkLocalName(f, display, dataOff)

	if strings.HasSuffix(name, "/") && f.UncompressedSize64 == 0 && f.CompressedSize64 == 0 {
		return nil // a folder entry
	}
	if z.isStorage(name) {
		// Raw tensor bytes: torch reads them with get_storage_from_record and
		// never unpickles them.
		return nil
	}
	if f.Method == methodStore && z.isTorchMetadata(name, dataOff, f) {
		return nil
	}
	switch f.Method {
	case methodStore:
		return z.stored(ctx, f, display, dataOff)
	case methodDeflate, methodBzip2, methodLZMA, methodZstd:
		return z.compressed(ctx, f, display, dataOff)
	default:
		z.env.Skip(z.memberLoc(display), fmt.Sprintf("compression method %d is not supported; member not scanned", f.Method))
		return nil
	}
}

// checkLocalName compares the member's local header name with its central
// directory name.
func (z *zipScan) checkLocalName(f *zip.File, display string, dataOff int64) {
	h := z.rec.lastOff
	if h < 0 {
		return
	}
	var hdr [localHeaderLen]byte
	if _, err := z.in.R.ReadAt(hdr[:], h); err != nil {
		return
	}
	if binary.LittleEndian.Uint32(hdr[:4]) != localHeaderSig {
		return
	}
	nameLen := int64(binary.LittleEndian.Uint16(hdr[26:]))
	extraLen := int64(binary.LittleEndian.Uint16(hdr[28:]))
	if h+localHeaderLen+nameLen+extraLen != dataOff {
		return // not the read DataOffset made; archive/zip changed
	}
	local := make([]byte, nameLen)
	if _, err := z.in.R.ReadAt(local, h+localHeaderLen); err != nil {
		return
	}
	if string(local) != f.Name {
		z.report("zip/name-mismatch", finding.Medium, display,
			fmt.Sprintf("local header at byte %d names %q but the central directory names %q; tools that trust either name see different files", h, local, f.Name),
			map[string]string{"local_name": string(local), "central_name": f.Name, "header_offset": fmt.Sprint(h)})
	}
}

// stored scans a member kept without compression, straight from the
// archive, then checks its CRC-32.
func (z *zipScan) stored(ctx context.Context, f *zip.File, display string, dataOff int64) error {
	span := int64(f.CompressedSize64)
	if span < 0 || dataOff > z.in.Size || span > z.in.Size-dataOff {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: its %d data bytes at byte %d run past the end of the archive (%d bytes); the part present is scanned", f.Name, f.CompressedSize64, dataOff, z.in.Size))
		span = max(0, z.in.Size-dataOff)
	}
	if span == 0 {
		return nil
	}
	encrypted := f.Flags&(flagEncrypted|flagStrongEncrypted) != 0
	if uint64(span) != f.UncompressedSize64 && !(encrypted && uint64(span) == f.UncompressedSize64+zipCryptoHeader) {
		z.report("zip/size-mismatch", finding.Medium, display,
			fmt.Sprintf("stored member holds %d bytes but declares %d; readers disagree on its length, all %d bytes are scanned", span, f.UncompressedSize64, span),
			map[string]string{"compressed": fmt.Sprint(f.CompressedSize64), "uncompressed": fmt.Sprint(f.UncompressedSize64)})
	}
	sr := io.NewSectionReader(z.in.R, dataOff, span)
	crc := crc32.NewIEEE()
	if _, err := io.Copy(crc, io.NewSectionReader(z.in.R, dataOff, span)); err != nil {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: reading its data: %w", f.Name, err))
		return nil
	}
	if err := z.env.Member(ctx, z.in, display, sr, span, 0); err != nil {
		return err
	}
	z.afterData(f, display, crc.Sum32() == f.CRC32, nil)
	return nil
}

// compressed decompresses a member as a stream into the registry, keeping
// whatever was read before a CRC or decompression error.
func (z *zipScan) compressed(ctx context.Context, f *zip.File, display string, dataOff int64) error {
	comp := int64(f.CompressedSize64)
	if comp < 0 || dataOff > z.in.Size || comp > z.in.Size-dataOff {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: its %d compressed bytes at byte %d run past the end of the archive (%d bytes); the part present is scanned", f.Name, f.CompressedSize64, dataOff, z.in.Size))
		comp = max(0, z.in.Size-dataOff)
	}
	declared := f.UncompressedSize64
	if ratio := z.env.Limits.MaxRatio; ratio > 0 && declared > 0 && declared/uint64(max(comp, 1)) > uint64(ratio) {
		z.report("archive/compression-ratio", finding.High, display,
			fmt.Sprintf("member declares %d bytes from %d compressed, a ratio above %d:1 (decompression bomb?); not scanned", declared, comp, ratio),
			map[string]string{"compressed": fmt.Sprint(comp), "uncompressed": fmt.Sprint(declared)})
		return nil
	}
	raw := io.NewSectionReader(z.in.R, dataOff, comp)
	dec, err := decompressor(f.Method, raw, declared)
	if err == nil && declared == 0 {
		defer dec.Close()
		var one [1]byte
		if n, _ := io.ReadFull(dec, one[:]); n > 0 {
			z.report("zip/size-mismatch", finding.Medium, display,
				"member declares 0 bytes but its compressed data holds more; loaders read nothing, so nothing was scanned",
				map[string]string{"compressed": fmt.Sprint(comp), "uncompressed": "0"})
		}
		return nil
	}
	if err != nil {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: %w", f.Name, err))
		z.afterData(f, display, false, err)
		return nil
	}
	defer dec.Close()
	cr := &checkedReader{r: dec, left: declared, crc: crc32.NewIEEE()}
	if err := z.env.MemberStream(ctx, z.in, display, cr, comp); err != nil {
		return err
	}
	if cr.err != nil {
		z.env.Fail(z.memberLoc(display), fmt.Errorf("zip member %q: decompressing after %d bytes (the bytes before were scanned): %w", f.Name, cr.n, cr.err))
	}
	if !cr.done {
		return nil // the budget stopped the read: no verdict on size or CRC
	}
	if cr.err == nil {
		var one [1]byte
		if n, _ := io.ReadFull(dec, one[:]); n > 0 {
			z.report("zip/size-mismatch", finding.Medium, display,
				fmt.Sprintf("compressed data continues past the declared %d bytes; only the declared bytes were scanned, as loaders read them", declared),
				map[string]string{"uncompressed": fmt.Sprint(declared)})
		} else if uint64(cr.n) < declared {
			z.report("zip/size-mismatch", finding.Medium, display,
				fmt.Sprintf("compressed data ends after %d bytes but the member declares %d", cr.n, declared),
				map[string]string{"uncompressed": fmt.Sprint(declared), "actual": fmt.Sprint(cr.n)})
		}
	}
	z.afterData(f, display, cr.err == nil && cr.crc.Sum32() == f.CRC32, cr.err)
	return nil
}

// afterData reports a CRC mismatch, and an encrypted member whose data does
// not check out as plaintext.
func (z *zipScan) afterData(f *zip.File, display string, crcOK bool, readErr error) {
	encrypted := f.Flags&(flagEncrypted|flagStrongEncrypted) != 0
	if !crcOK && readErr == nil && !encrypted {
		z.report("zip/crc-mismatch", finding.Medium, display,
			fmt.Sprintf("member data does not match its CRC-32 %08x; PyTorch ignores the CRC, so the data was scanned as it is", f.CRC32),
			map[string]string{"crc32": fmt.Sprintf("%08x", f.CRC32)})
	}
	if encrypted && !crcOK {
		z.report("zip/encrypted", finding.Low, display,
			"member is encrypted: its data does not check out as plaintext, so its real contents could not be scanned",
			map[string]string{"flags": fmt.Sprintf("0x%04x", f.Flags)})
		z.env.Skip(z.memberLoc(display), "encrypted zip member: contents cannot be scanned without the password")
	}
}

// checkedReader reads at most left bytes of a decompressed member, computes
// their CRC-32, and turns any error into a clean end of stream so that the
// bytes already read are scanned; the error is kept for the caller.
type checkedReader struct {
	r    io.Reader
	left uint64
	n    int64
	crc  hash.Hash32
	err  error
	done bool
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.done || c.err != nil {
		return 0, io.EOF
	}
	if c.left == 0 {
		c.done = true
		return 0, io.EOF
	}
	if uint64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	c.left -= uint64(n)
	switch {
	case err == io.EOF:
		c.done = true
	case err != nil:
		c.err = err
		c.done = true
	}
	if n > 0 {
		return n, nil
	}
	if c.done {
		return 0, io.EOF
	}
	return 0, nil
}

// decompressor returns a reader of a member's decompressed data.
func decompressor(method uint16, raw io.Reader, size uint64) (io.ReadCloser, error) {
	switch method {
	case methodDeflate:
		return flate.NewReader(raw), nil
	case methodBzip2:
		return io.NopCloser(bzip2.NewReader(raw)), nil
	case methodZstd:
		d, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return d.IOReadCloser(), nil
	case methodLZMA:
		return lzmaReader(raw, size)
	}
	return nil, fmt.Errorf("compression method %d not supported", method)
}

// lzmaReader reads zip's LZMA method (APPNOTE 5.8.8): a 2-byte version, a
// 2-byte properties length, the 5 properties bytes, then a raw LZMA stream.
// It rebuilds the classic .lzma header around it for the lzma package.
func lzmaReader(raw io.Reader, size uint64) (io.ReadCloser, error) {
	var pre [4]byte
	if _, err := io.ReadFull(raw, pre[:]); err != nil {
		return nil, fmt.Errorf("lzma: reading the header: %w", err)
	}
	if n := binary.LittleEndian.Uint16(pre[2:]); n != 5 {
		return nil, fmt.Errorf("lzma: properties length %d, want 5", n)
	}
	var hdr [13]byte
	if _, err := io.ReadFull(raw, hdr[:5]); err != nil {
		return nil, fmt.Errorf("lzma: reading the properties: %w", err)
	}
	binary.LittleEndian.PutUint64(hdr[5:], size)
	r, err := lzma.ReaderConfig{DictCap: 1 << 26}.NewReader(io.MultiReader(bytes.NewReader(hdr[:]), raw))
	if err != nil {
		return nil, fmt.Errorf("lzma: %w", err)
	}
	return io.NopCloser(r), nil
}

// torchFolders returns the top folders F with an F/data.pkl member: the
// layout torch.save writes (F is "archive" or the file's stem).
func torchFolders(files []*zip.File) map[string]bool {
	dirs := map[string]bool{}
	for _, f := range files {
		dir, rest, ok := strings.Cut(f.Name, "/")
		if ok && dir != "" && rest == "data.pkl" {
			dirs[dir] = true
		}
	}
	return dirs
}

// isNPZ reports whether every member is a .npy file (numpy.savez).
func isNPZ(files []*zip.File) bool {
	for _, f := range files {
		if !strings.HasSuffix(f.Name, ".npy") {
			return false
		}
	}
	return len(files) > 0
}

// isStorage reports whether name is F/data/<digits> in a PyTorch zip: a
// tensor storage torch reads as raw bytes, never as a pickle.
func (z *zipScan) isStorage(name string) bool {
	dir, rest, ok := strings.Cut(name, "/")
	if !ok || !z.torchDirs[dir] {
		return false
	}
	key, ok := strings.CutPrefix(rest, "data/")
	return ok && isDigits(key)
}

var (
	torchNumberFile = regexp.MustCompile(`^[0-9]{1,64}\n?$`)
	torchByteorder  = regexp.MustCompile(`^(little|big)\n?$`)
)

// isTorchMetadata reports whether a stored member of a PyTorch zip is one of
// the small text records torch writes (version, byteorder, serialization id)
// and holds exactly what torch writes there. Such content contains no pickle
// opcode that can do anything, so it needs no scanner; anything else under
// those names is dispatched like any member.
func (z *zipScan) isTorchMetadata(name string, dataOff int64, f *zip.File) bool {
	dir, rest, ok := strings.Cut(name, "/")
	if !ok || !z.torchDirs[dir] {
		return false
	}
	var re *regexp.Regexp
	switch rest {
	case "version", ".data/version", ".format_version", ".storage_alignment", ".data/serialization_id":
		re = torchNumberFile
	case "byteorder":
		re = torchByteorder
	default:
		return false
	}
	if f.CompressedSize64 > 65 || f.CompressedSize64 != f.UncompressedSize64 {
		return false
	}
	buf := make([]byte, f.CompressedSize64)
	if _, err := z.in.R.ReadAt(buf, dataOff); err != nil {
		return false
	}
	return re.Match(buf) && crc32.ChecksumIEEE(buf) == f.CRC32
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func flagNames(bits uint16) string {
	var names []string
	if bits&flagEncrypted != 0 {
		names = append(names, "encrypted")
	}
	if bits&flagPatched != 0 {
		names = append(names, "compressed patched data")
	}
	if bits&flagStrongEncrypted != 0 {
		names = append(names, "strong encryption")
	}
	return strings.Join(names, ", ")
}
