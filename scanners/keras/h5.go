package keras

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// hdf5Magic is the HDF5 format signature. The superblock sits at offset 0
// or after a user block of 512, 1024, 2048, ... bytes.
var hdf5Magic = []byte("\x89HDF\r\n\x1a\n")

// Limits of the HDF5 reader.
const (
	maxHeaderChunks   = 64      // object header continuation blocks followed
	maxHeaderMessages = 10_000  // messages read from one object header
	maxChunk          = 1 << 24 // bytes of one object header chunk
	maxAttrs          = 4096    // attributes kept from the root group
)

// RuleH5Unsupported marks an HDF5 file whose root attributes could not all
// be read (dense attribute storage, shared messages): a model_config there
// was not checked.
const RuleH5Unsupported = "keras/h5-unreadable-attributes"

// Attr is one attribute of an HDF5 object whose value is a string.
type Attr struct {
	// Name is the attribute name.
	Name string
	// Value is the string value (the first element when it is an array).
	Value []byte
	// Off is the file offset of Value, or -1.
	Off int64
	// Vlen is true for a variable-length string read from the global heap.
	Vlen bool
}

// RootAttrs is what ReadRootAttrs found on the root group.
type RootAttrs struct {
	// Attrs are the string attributes, in header order.
	Attrs []Attr
	// Skipped names the attributes that are not strings.
	Skipped []string
	// Dense is true when the root group keeps (more) attributes in dense
	// storage (a fractal heap), which this reader does not follow.
	Dense bool
	// Unsupported lists other features met and not followed.
	Unsupported []string
}

// Get returns the attribute named name, or nil.
func (r *RootAttrs) Get(name string) *Attr {
	for i := range r.Attrs {
		if r.Attrs[i].Name == name {
			return &r.Attrs[i]
		}
	}
	return nil
}

// h5 reads an HDF5 file through an io.ReaderAt-like function, bounded by
// the file size.
type h5 struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	size int64
	base int64 // file offset of the superblock; addresses are relative to it
	so   int   // size of offsets
	sl   int   // size of lengths
}

func h5err(off int64, msg string, val any) error {
	return &scan.FormatError{Format: "hdf5", Off: off, Msg: msg, Val: val}
}

// read returns n bytes at the relative address addr.
func (h *h5) read(addr uint64, n int, what string) ([]byte, int64, error) {
	if addr > uint64(h.size) || int64(addr) > h.size-h.base || n < 0 || int64(n) > h.size-h.base-int64(addr) {
		return nil, -1, h5err(h.base+int64(min(addr, uint64(h.size))), fmt.Sprintf("%s of %d bytes runs past the end of the file", what, n), nil)
	}
	off := h.base + int64(addr)
	b := make([]byte, n)
	if m, err := h.r.ReadAt(b, off); m < n {
		return nil, -1, h5err(off, fmt.Sprintf("reading %s: %v", what, err), nil)
	}
	return b, off, nil
}

func undefined(v uint64, size int) bool {
	return size == 8 && v == ^uint64(0) || size < 8 && v == 1<<(8*size)-1
}

func uintN(b []byte, n int) uint64 {
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// findSuperblock returns the offset of the HDF5 signature: 0, 512, 1024,
// 2048, ... up to the file size.
func findSuperblock(r interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) (int64, bool) {
	sig := make([]byte, 8)
	for off := int64(0); off+8 <= size; {
		if n, _ := r.ReadAt(sig, off); n == 8 && bytes.Equal(sig, hdf5Magic) {
			return off, true
		}
		if off == 0 {
			off = 512
		} else {
			off *= 2
		}
	}
	return 0, false
}

// ReadRootAttrs reads the string attributes of an HDF5 file's root group:
// superblock versions 0 to 3, object header versions 1 and 2 with their
// continuation blocks, attribute messages versions 1 to 3, fixed-length
// strings and variable-length strings in global heap collections. Every
// address and length is checked against the file size.
func ReadRootAttrs(r interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) (*RootAttrs, error) {
	base, ok := findSuperblock(r, size)
	if !ok {
		return nil, scan.ErrNotFormat
	}
	h := &h5{r: r, size: size, base: base}
	sb, _, err := h.read(0, min(96, int(size-base)), "superblock")
	if err != nil {
		return nil, err
	}
	if len(sb) < 12 {
		return nil, h5err(base, "superblock is truncated", nil)
	}
	var rootAddr uint64
	switch v := sb[8]; v {
	case 0, 1:
		if len(sb) < 16 {
			return nil, h5err(base, "superblock is truncated", nil)
		}
		h.so, h.sl = int(sb[13]), int(sb[14])
		if err := h.checkSizes(); err != nil {
			return nil, err
		}
		p := 24
		if v == 1 {
			p = 28
		}
		// base, free-space, end-of-file and driver addresses, then the
		// root symbol table entry: link name offset, object header address.
		p += 5 * h.so
		if p+h.so > len(sb) {
			return nil, h5err(base, "superblock is truncated", nil)
		}
		rootAddr = uintN(sb[p:], h.so)
	case 2, 3:
		h.so, h.sl = int(sb[9]), int(sb[10])
		if err := h.checkSizes(); err != nil {
			return nil, err
		}
		p := 12 + 3*h.so
		if p+h.so > len(sb) {
			return nil, h5err(base, "superblock is truncated", nil)
		}
		rootAddr = uintN(sb[p:], h.so)
	default:
		return nil, h5err(base+8, "unknown superblock version", v)
	}
	if undefined(rootAddr, h.so) {
		return nil, h5err(base, "root group address is undefined", nil)
	}
	out := &RootAttrs{}
	err = h.objectHeader(rootAddr, func(typ uint16, flags byte, data []byte, off int64) error {
		switch typ {
		case 0x0C: // attribute
			if flags&0x02 != 0 {
				out.Unsupported = append(out.Unsupported, "shared attribute message")
				return nil
			}
			if len(out.Attrs)+len(out.Skipped) >= maxAttrs {
				return nil
			}
			a, isString, err := h.attribute(data, off)
			if err != nil {
				return err
			}
			if isString {
				out.Attrs = append(out.Attrs, a)
			} else {
				out.Skipped = append(out.Skipped, a.Name)
			}
		case 0x15: // attribute info: dense storage when the heap address is defined
			if len(data) >= 2+h.so {
				p := 2
				if data[1]&0x01 != 0 {
					p += 2
				}
				if p+h.so <= len(data) && !undefined(uintN(data[p:], h.so), h.so) {
					out.Dense = true
				}
			}
		}
		return nil
	})
	return out, err
}

func (h *h5) checkSizes() error {
	for _, s := range []int{h.so, h.sl} {
		if s != 2 && s != 4 && s != 8 {
			return h5err(h.base+9, "unsupported size of offsets or lengths", s)
		}
	}
	return nil
}

// objectHeader calls fn for every message of the object header at addr,
// following continuation blocks.
func (h *h5) objectHeader(addr uint64, fn func(typ uint16, flags byte, data []byte, off int64) error) error {
	type chunk struct {
		addr, n uint64
	}
	head, hoff, err := h.read(addr, min(32, int(h.size-h.base-min(int64(addr), h.size-h.base))), "object header")
	if err != nil {
		return err
	}
	v2 := bytes.HasPrefix(head, []byte("OHDR"))
	var queue []chunk
	msgStart := uint64(0)
	creationOrder := false // v2: messages carry a creation order
	switch {
	case v2:
		if len(head) < 7 || head[4] != 2 {
			return h5err(hoff, "unknown object header version", nil)
		}
		flags := head[5]
		creationOrder = flags&0x04 != 0
		p := 6
		if flags&0x20 != 0 {
			p += 16
		}
		if flags&0x10 != 0 {
			p += 4
		}
		w := 1 << (flags & 3)
		if p+w > len(head) {
			return h5err(hoff, "object header is truncated", nil)
		}
		size := uintN(head[p:], w)
		msgStart = addr + uint64(p+w)
		queue = append(queue, chunk{msgStart, size})
	case len(head) >= 16 && head[0] == 1:
		size := uint64(binary.LittleEndian.Uint32(head[8:]))
		queue = append(queue, chunk{addr + 16, size})
	default:
		return h5err(hoff, "not an object header (version 1 or OHDR)", nil)
	}
	seen := map[uint64]bool{}
	msgs := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if seen[c.addr] {
			return h5err(h.base+int64(min(c.addr, uint64(h.size))), "object header continuation loops", nil)
		}
		seen[c.addr] = true
		if len(seen) > maxHeaderChunks {
			return h5err(h.base+int64(min(c.addr, uint64(h.size))), fmt.Sprintf("object header has more than %d continuation blocks", maxHeaderChunks), nil)
		}
		if c.n > maxChunk {
			return h5err(h.base+int64(min(c.addr, uint64(h.size))), "object header chunk is too large", c.n)
		}
		b, off, err := h.read(c.addr, int(c.n), "object header chunk")
		if err != nil {
			return err
		}
		if v2 && c.addr != msgStart {
			// A continuation block: OCHK, messages, checksum. Chunk #0's
			// size excludes its checksum.
			if len(b) < 8 || !bytes.HasPrefix(b, []byte("OCHK")) {
				return h5err(off, "continuation block lacks its OCHK signature", nil)
			}
			b, off = b[4:len(b)-4], off+4
		}
		p := 0
		for {
			var typ uint16
			var flags byte
			var n, hdr int
			if v2 {
				if p+4 > len(b) {
					break // gap
				}
				typ, n, flags, hdr = uint16(b[p]), int(binary.LittleEndian.Uint16(b[p+1:])), b[p+3], 4
				if creationOrder {
					hdr += 2
				}
			} else {
				if p+8 > len(b) {
					break
				}
				typ, n, flags, hdr = binary.LittleEndian.Uint16(b[p:]), int(binary.LittleEndian.Uint16(b[p+2:])), b[p+4], 8
			}
			if p+hdr+n > len(b) {
				return h5err(off+int64(p), "object header message runs past its chunk", n)
			}
			if msgs++; msgs > maxHeaderMessages {
				return h5err(off+int64(p), fmt.Sprintf("object header has more than %d messages", maxHeaderMessages), nil)
			}
			data := b[p+hdr : p+hdr+n]
			if typ == 0x10 { // continuation
				if len(data) < h.so+h.sl {
					return h5err(off+int64(p), "continuation message is truncated", nil)
				}
				queue = append(queue, chunk{uintN(data, h.so), uintN(data[h.so:], h.sl)})
			} else if err := fn(typ, flags, data, off+int64(p+hdr)); err != nil {
				return err
			}
			p += hdr + n
			if !v2 {
				p = (p + 7) &^ 7
			}
		}
	}
	return nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// attribute decodes an attribute message. isString is false for values
// that are not strings (only the name is returned then).
func (h *h5) attribute(d []byte, off int64) (Attr, bool, error) {
	a := Attr{Off: -1}
	if len(d) < 8 {
		return a, false, h5err(off, "attribute message is truncated", nil)
	}
	ver, flags := d[0], d[1]
	nameN, dtN, dsN := int(binary.LittleEndian.Uint16(d[2:])), int(binary.LittleEndian.Uint16(d[4:])), int(binary.LittleEndian.Uint16(d[6:]))
	p := 8
	pad := func(n int) int { return n }
	switch ver {
	case 1:
		pad = align8
	case 2:
	case 3:
		p = 9
	default:
		return a, false, h5err(off, "unknown attribute message version", ver)
	}
	if p+pad(nameN) > len(d) {
		return a, false, h5err(off, "attribute name runs past its message", nameN)
	}
	a.Name = string(bytes.TrimRight(d[p:p+nameN], "\x00"))
	p += pad(nameN)
	if p+pad(dtN) > len(d) || dtN < 8 {
		return a, false, h5err(off+int64(p), "attribute datatype runs past its message", dtN)
	}
	dt := d[p : p+dtN]
	p += pad(dtN)
	if p+pad(dsN) > len(d) || dsN < 2 {
		return a, false, h5err(off+int64(p), "attribute dataspace runs past its message", dsN)
	}
	ds := d[p : p+dsN]
	p += pad(dsN)
	data, dataOff := d[p:], off+int64(p)
	if flags&0x03 != 0 {
		return a, false, nil // shared datatype or dataspace: not a plain string
	}
	if ds[1] == 0 && len(ds) >= 4 && ds[0] == 2 && ds[3] == 2 {
		return a, false, nil // null dataspace: no value
	}
	class, size := dt[0]&0x0f, int(binary.LittleEndian.Uint32(dt[4:]))
	switch class {
	case 3: // fixed-length string
		if size > len(data) {
			return a, false, h5err(dataOff, "attribute value runs past its message", size)
		}
		v := data[:size]
		switch dt[1] & 0x0f {
		case 0, 1: // null-terminated, null-padded
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
		case 2:
			v = bytes.TrimRight(v, " ")
		}
		a.Value, a.Off = v, dataOff
		return a, true, nil
	case 9: // variable-length: string, or a sequence of 1-byte elements
		if dt[1]&0x0f == 0 && (len(dt) < 16 || binary.LittleEndian.Uint32(dt[12:]) != 1) {
			return a, false, nil
		}
		if len(data) < 4+h.so+4 {
			return a, false, h5err(dataOff, "variable-length attribute value is truncated", nil)
		}
		n := uint64(binary.LittleEndian.Uint32(data))
		coll := uintN(data[4:], h.so)
		idx := binary.LittleEndian.Uint32(data[4+h.so:])
		if n == 0 || undefined(coll, h.so) {
			a.Vlen = true
			return a, true, nil
		}
		v, voff, err := h.heapObject(coll, idx)
		if err != nil {
			return a, false, err
		}
		if uint64(len(v)) > n {
			v = v[:n]
		}
		a.Value, a.Off, a.Vlen = v, voff, true
		return a, true, nil
	}
	return a, false, nil
}

// heapObject reads object idx of the global heap collection at addr.
func (h *h5) heapObject(addr uint64, idx uint32) ([]byte, int64, error) {
	hdr, off, err := h.read(addr, 8+h.sl, "global heap collection header")
	if err != nil {
		return nil, -1, err
	}
	if !bytes.HasPrefix(hdr, []byte("GCOL")) || hdr[4] != 1 {
		return nil, -1, h5err(off, "not a global heap collection", nil)
	}
	total := uintN(hdr[8:], h.sl)
	if total < uint64(8+h.sl) || total > uint64(h.size-off) || total > MaxConfigSize+(1<<20) {
		return nil, -1, h5err(off, "global heap collection size does not fit the file", total)
	}
	coll, _, err := h.read(addr, int(total), "global heap collection")
	if err != nil {
		return nil, -1, err
	}
	p := 8 + h.sl
	for p+8+h.sl <= len(coll) {
		id := binary.LittleEndian.Uint16(coll[p:])
		n := uintN(coll[p+8:], h.sl)
		start := p + 8 + h.sl
		if id == 0 {
			break // free space
		}
		if n > uint64(len(coll)-start) {
			return nil, -1, h5err(off+int64(p), "global heap object runs past its collection", n)
		}
		if uint32(id) == idx {
			return coll[start : start+int(n)], off + int64(start), nil
		}
		p = start + align8(int(n))
	}
	return nil, -1, h5err(off, "global heap object not found", idx)
}

// H5Scanner is the scan.Scanner for HDF5 files: legacy Keras models (.h5)
// keep their architecture as JSON in the root attribute model_config, and
// the compile arguments in training_config; both are checked as Keras
// configs. HDF5 files without them (Keras 3 model.weights.h5, data files)
// are recorded and pass.
type H5Scanner struct{}

// Format implements scan.Scanner.
func (H5Scanner) Format() string { return "hdf5" }

// Match implements scan.Scanner: the HDF5 signature at offset 0 or after a
// user block of 512, 1024 or 2048 bytes (as far as scan.HeadSize reaches;
// larger user blocks are not recognised).
func (H5Scanner) Match(head []byte, size int64) bool {
	if bytes.HasPrefix(head, hdf5Magic) {
		return true
	}
	for off := 512; off+len(hdf5Magic) <= len(head); off *= 2 {
		if bytes.Equal(head[off:off+len(hdf5Magic)], hdf5Magic) {
			return true
		}
	}
	return false
}

// Scan implements scan.Scanner.
func (H5Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	attrs, err := ReadRootAttrs(in.R, in.Size)
	if errors.Is(err, scan.ErrNotFormat) {
		return err
	}
	if err != nil {
		return err
	}
	for _, a := range attrs.Attrs {
		switch a.Name {
		case "keras_version":
			env.SetMeta(in, "keras.version", string(a.Value))
		case "backend":
			env.SetMeta(in, "keras.backend", string(a.Value))
		}
	}
	for _, name := range []string{"model_config", "training_config"} {
		a := attrs.Get(name)
		if a == nil || len(a.Value) == 0 {
			continue
		}
		cfg, err := CheckJSON(a.Value, env.Policy)
		if err != nil {
			var je *jsonError
			off := a.Off
			if errors.As(err, &je) && off >= 0 {
				off += je.off
			}
			env.Fail(in.At(off), fmt.Errorf("hdf5: root attribute %s is not valid JSON: %w", name, err))
			continue
		}
		if name == "model_config" {
			env.Noted("keras")
			ReportConfig(env, in, cfg, a.Off)
			continue
		}
		for _, h := range cfg.Hits {
			off := int64(-1)
			if a.Off >= 0 && h.Off >= 0 {
				off = a.Off + h.Off
			}
			env.Report(finding.Finding{Rule: h.Rule, Severity: h.Severity, Location: in.At(off), Message: "training_config: " + h.Message, Global: h.Global, Evidence: h.Evidence})
		}
	}
	if attrs.Dense || len(attrs.Unsupported) > 0 {
		why := "dense attribute storage (fractal heap)"
		if !attrs.Dense {
			why = attrs.Unsupported[0]
		}
		sev := finding.Low
		if attrs.Get("model_config") == nil {
			sev = finding.Medium // a model_config may hide there
		}
		env.Report(finding.Finding{Rule: RuleH5Unsupported, Severity: sev, Location: in.At(-1),
			Message: "the root group keeps attributes in " + why + ", which modelseal does not read: a model_config there was not checked"})
	}
	return nil
}
