// Package torchlegacy scans PyTorch's legacy (pre-1.6, non-zip, non-tar)
// torch.save format, as torch/serialization.py's _legacy_load reads it: five
// pickles (the magic number 0x1950a86a20f9469cfc6c, the protocol version,
// sys_info, the object, the sorted list of storage keys), then for each key
// a little-endian u64 element count and that many elements of the storage's
// type. Every pickle goes through the pickle analyzer; the raw data is
// checked against the storages the object names, bounded by the bytes that
// remain; bytes after the data, where torch.load never reads, are reported
// and analysed in case they hide a pickle.
//
// A file whose first pickle is not literally the magic number (for example
// eval('0x1950...'), which also gets past torch's check) is left to the
// plain pickle scanner, which reads stacked pickles the same way.
package torchlegacy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// Magic is torch.serialization.MAGIC_NUMBER.
var Magic = func() *big.Int { n, _ := new(big.Int).SetString("1950a86a20f9469cfc6c", 16); return n }()

// Scanner scans legacy PyTorch files. The zero value is ready to use.
type Scanner struct{}

// New returns a legacy PyTorch scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "pytorch-legacy".
func (*Scanner) Format() string { return "pytorch-legacy" }

// Match reports whether the stream's first pickle is the integer magic
// number.
func (*Scanner) Match(head []byte, size int64) bool {
	n, ok := intPickle(head)
	return ok && n.Cmp(Magic) == 0
}

// IntPickle decodes b as a pickle that holds nothing but one integer, such
// as the magic number of a legacy file or the counts of a legacy tar.
func IntPickle(b []byte) (*big.Int, bool) { return intPickle(b) }

// intPickle decodes a pickle that holds nothing but one integer: optional
// PROTO and FRAME, an integer opcode, optional memo stores, STOP. It is
// exact about what it accepts and refuses anything else.
func intPickle(b []byte) (*big.Int, bool) {
	i := 0
	if i+1 < len(b) && b[i] == 0x80 { // PROTO
		i += 2
	}
	if i < len(b) && b[i] == 0x95 { // FRAME
		i += 9
	}
	if i >= len(b) {
		return nil, false
	}
	var n *big.Int
	switch op := b[i]; op {
	case 'K': // BININT1
		if i+2 > len(b) {
			return nil, false
		}
		n = big.NewInt(int64(b[i+1]))
		i += 2
	case 'M': // BININT2
		if i+3 > len(b) {
			return nil, false
		}
		n = big.NewInt(int64(binary.LittleEndian.Uint16(b[i+1:])))
		i += 3
	case 'J': // BININT
		if i+5 > len(b) {
			return nil, false
		}
		n = big.NewInt(int64(int32(binary.LittleEndian.Uint32(b[i+1:]))))
		i += 5
	case 0x8a, 0x8b: // LONG1, LONG4
		var l int
		if op == 0x8a {
			if i+1 >= len(b) {
				return nil, false
			}
			l = int(b[i+1])
			i += 2
		} else {
			if i+5 > len(b) {
				return nil, false
			}
			l64 := binary.LittleEndian.Uint32(b[i+1:])
			if l64 > 64 {
				return nil, false
			}
			l = int(l64)
			i += 5
		}
		if i+l > len(b) {
			return nil, false
		}
		n = decodeLong(b[i : i+l])
		i += l
	case 'I', 'L': // INT, LONG: decimal text to a newline
		j := i + 1
		for j < len(b) && j-i < 64 && b[j] != '\n' {
			j++
		}
		if j >= len(b) || b[j] != '\n' {
			return nil, false
		}
		text := strings.TrimSuffix(strings.TrimSpace(string(b[i+1:j])), "L")
		var ok bool
		if n, ok = new(big.Int).SetString(text, 0); !ok {
			return nil, false
		}
		i = j + 1
	default:
		return nil, false
	}
	for i < len(b) {
		switch b[i] {
		case 'q': // BINPUT
			i += 2
		case 'r': // LONG_BINPUT
			i += 5
		case 0x94: // MEMOIZE
			i++
		case '.':
			return n, true
		default:
			return nil, false
		}
	}
	return nil, false
}

// decodeLong decodes pickle's little-endian two's complement LONG bytes.
func decodeLong(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i, c := range b {
		be[len(b)-1-i] = c
	}
	n := new(big.Int).SetBytes(be)
	if len(b) > 0 && b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// elementSizes are the bytes per element of each storage class
// (torch._utils._element_size of its dtype).
var elementSizes = map[string]int64{
	"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
	"Char": 1, "Byte": 1, "Bool": 1, "ComplexDouble": 16, "ComplexFloat": 8,
	"QUInt8": 1, "QInt8": 1, "QInt32": 4, "QUInt4x2": 1, "QUInt2x4": 1,
}

// ElementSize returns the element size of a storage class such as
// "torch.FloatStorage" or "torch.cuda.HalfStorage", or 0 when unknown.
func ElementSize(typ string) int64 {
	name, ok := strings.CutPrefix(typ, "torch.cuda.")
	if !ok {
		name, ok = strings.CutPrefix(typ, "torch.")
	}
	if !ok {
		return 0
	}
	name, ok = strings.CutSuffix(name, "Storage")
	if !ok {
		return 0
	}
	return elementSizes[name]
}

// Scan analyses the five pickles, then checks the storage data layout.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	head := make([]byte, min(in.Size, scan.HeadSize))
	if _, err := in.R.ReadAt(head, 0); err != nil && err != io.EOF {
		return err
	}
	if !s.Match(head, in.Size) {
		return scan.ErrNotFormat
	}
	env.Noted(s.Format())
	sum, err := pickle.Analyze(ctx, io.NewSectionReader(in.R, 0, in.Size), in, 0, env, pickle.Options{MaxPickles: 4})
	if err != nil {
		return fmt.Errorf("pytorch legacy file: %w", err)
	}
	if sum.Pickles < 4 {
		return &scan.FormatError{Format: "pytorch-legacy", Off: sum.Consumed, Msg: fmt.Sprintf("file ends after %d of its 5 pickles", sum.Pickles)}
	}
	pos := sum.Consumed
	ksum, err := pickle.Analyze(ctx, io.NewSectionReader(in.R, pos, in.Size-pos), in, pos, env, pickle.Options{MaxPickles: 1})
	if errors.Is(err, pickle.ErrNotPickle) || (err == nil && ksum.Pickles == 0) {
		return &scan.FormatError{Format: "pytorch-legacy", Off: pos, Msg: "no storage key list after the object"}
	}
	if err != nil {
		return fmt.Errorf("pytorch legacy storage key list: %w", err)
	}
	imports := append(sum.Imports, ksum.Imports...)
	env.SetMeta(in, "pickle.imports", imports)
	env.SetMeta(in, "pytorch.storages", len(ksum.Keys))
	pos += ksum.Consumed
	end, ok := s.checkStorages(in, env, pos, sum.Storages, ksum)
	if !ok || end >= in.Size {
		return nil
	}
	// Bytes after the storage data: torch.load never reads them.
	env.Report(finding.Finding{Rule: "torch/trailing-data", Severity: finding.Medium, Location: in.At(end),
		Message:  fmt.Sprintf("%d bytes after the storage data, where torch.load never reads", in.Size-end),
		Evidence: map[string]string{"offset": fmt.Sprint(end), "bytes": fmt.Sprint(in.Size - end)}})
	_, err = pickle.Analyze(ctx, io.NewSectionReader(in.R, end, in.Size-end), in, end, env, pickle.Options{})
	if err != nil && !errors.Is(err, pickle.ErrNotPickle) {
		return fmt.Errorf("pickle hidden after the storage data: %w", err)
	}
	return nil
}

// checkStorages walks the raw storage records that follow the key list at
// pos, as torch's _set_from_file reads them. It returns where they end, or
// false after reporting a layout torch.load would reject.
func (s *Scanner) checkStorages(in scan.Input, env *scan.Env, pos int64, storages []pickle.Storage, ksum pickle.Summary) (int64, bool) {
	layout := func(off int64, format string, args ...any) (int64, bool) {
		env.Report(finding.Finding{Rule: "torch/storage-layout", Severity: finding.Medium, Location: in.At(off),
			Message: fmt.Sprintf(format, args...) + "; torch.load would fail here, after running the pickles"})
		return 0, false
	}
	if ksum.Keys == nil {
		return layout(pos, "the fifth pickle is not a list of storage keys")
	}
	byKey := map[string]pickle.Storage{}
	for _, st := range storages {
		if _, seen := byKey[st.Key]; !seen {
			byKey[st.Key] = st
		}
	}
	var buf [8]byte
	for _, key := range ksum.Keys {
		st, ok := byKey[key]
		if !ok {
			return layout(pos, "storage key %q is not named by any storage of the object", key)
		}
		size := ElementSize(st.Type)
		if size == 0 {
			return layout(pos, "storage %q has an unknown type %q", key, st.Type)
		}
		if in.Size-pos < 8 {
			return layout(pos, "the file ends before the element count of storage %q", key)
		}
		if _, err := in.R.ReadAt(buf[:], pos); err != nil {
			return layout(pos, "reading the element count of storage %q: %v", key, err)
		}
		count := binary.LittleEndian.Uint64(buf[:])
		pos += 8
		left := in.Size - pos
		if count > uint64(left/size) {
			return layout(pos-8, "storage %q claims %d elements of %d bytes but only %d bytes remain", key, count, size, left)
		}
		if st.Numel > 0 && int64(count) != st.Numel {
			return layout(pos-8, "storage %q holds %d elements but the pickle gives it %d", key, count, st.Numel)
		}
		pos += int64(count) * size
	}
	return pos, true
}
