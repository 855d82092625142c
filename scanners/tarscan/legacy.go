package tarscan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/pickle"
	"github.com/modelseal/modelseal/scanners/torchlegacy"
)

// errLayout marks a legacy member whose layout torch would reject; the
// finding is already reported.
var errLayout = errors.New("pytorch legacy tar layout")

// legacyMember walks a storages or tensors member of a legacy tar.
type legacyMember struct {
	ctx context.Context
	in  scan.Input
	env *scan.Env
	pos int64
}

func (m *legacyMember) layout(off int64, format string, args ...any) error {
	m.env.Report(finding.Finding{Rule: "torch/storage-layout", Severity: finding.Medium, Location: m.in.At(off),
		Message: fmt.Sprintf(format, args...) + "; torch.load would fail here"})
	return errLayout
}

// pickle analyses the one pickle at pos and moves past it.
func (m *legacyMember) pickle(what string) (pickle.Summary, int64, error) {
	start := m.pos
	sum, err := pickle.Analyze(m.ctx, io.NewSectionReader(m.in.R, start, m.in.Size-start), m.in, start, m.env, pickle.Options{MaxPickles: 1})
	if errors.Is(err, pickle.ErrNotPickle) || (err == nil && sum.Pickles != 1) {
		return sum, start, m.layout(start, "no pickle where the %s should be", what)
	}
	if err != nil {
		return sum, start, err
	}
	m.pos += sum.Consumed
	return sum, start, nil
}

// count analyses the pickle at pos and decodes it as a non-negative count.
func (m *legacyMember) count(what string) (int64, error) {
	sum, start, err := m.pickle(what)
	if err != nil {
		return 0, err
	}
	b := make([]byte, min(sum.Consumed, 64))
	if _, err := m.in.R.ReadAt(b, start); err != nil {
		return 0, err
	}
	n, ok := torchlegacy.IntPickle(b)
	if !ok || !n.IsInt64() || n.Int64() < 0 {
		return 0, m.layout(start, "the %s is not a plain non-negative integer", what)
	}
	return n.Int64(), nil
}

// raw reads n little-endian bytes at pos and moves past them.
func (m *legacyMember) raw(n int64, what string) ([]byte, error) {
	if m.in.Size-m.pos < n {
		return nil, m.layout(m.pos, "the member ends inside %s", what)
	}
	b := make([]byte, n)
	if _, err := m.in.R.ReadAt(b, m.pos); err != nil {
		return nil, err
	}
	m.pos += n
	return b, nil
}

// parseStorages follows legacy_load: a count, then per storage a pickle
// (key, location, storage_type) and the raw storage (u64 element count and
// the elements), then one pickle of storage views.
func parseStorages(ctx context.Context, in scan.Input, env *scan.Env) (int64, error) {
	m := &legacyMember{ctx: ctx, in: in, env: env}
	n, err := m.count("storage count")
	if err != nil {
		return 0, err
	}
	if n > (in.Size-m.pos)/(3+8) { // each storage takes a pickle and a count at least
		return 0, m.layout(0, "%d storages cannot fit in the %d bytes left", n, in.Size-m.pos)
	}
	for i := range n {
		sum, start, err := m.pickle(fmt.Sprintf("header of storage %d", i))
		if err != nil {
			return 0, err
		}
		var size int64
		for _, g := range sum.Imports {
			if s := torchlegacy.ElementSize(g); s > 0 {
				size = s
			}
		}
		if size == 0 {
			return 0, m.layout(start, "storage %d names no known storage type (imports %v)", i, sum.Imports)
		}
		b, err := m.raw(8, fmt.Sprintf("the element count of storage %d", i))
		if err != nil {
			return 0, err
		}
		elems := binary.LittleEndian.Uint64(b)
		if left := in.Size - m.pos; elems > uint64(left/size) {
			return 0, m.layout(m.pos-8, "storage %d claims %d elements of %d bytes but only %d bytes remain", i, elems, size, left)
		}
		m.pos += int64(elems) * size
	}
	if _, _, err := m.pickle("storage views"); err != nil {
		return 0, err
	}
	return m.pos, nil
}

// parseTensors follows legacy_load: a count, then per tensor a pickle
// (key, storage_id, tensor_type), an i32 ndim, 4 bytes, ndim i64 sizes,
// ndim i64 strides and an i64 storage offset.
func parseTensors(ctx context.Context, in scan.Input, env *scan.Env) (int64, error) {
	m := &legacyMember{ctx: ctx, in: in, env: env}
	n, err := m.count("tensor count")
	if err != nil {
		return 0, err
	}
	if n > (in.Size-m.pos)/(3+16) {
		return 0, m.layout(0, "%d tensors cannot fit in the %d bytes left", n, in.Size-m.pos)
	}
	for i := range n {
		if _, _, err := m.pickle(fmt.Sprintf("header of tensor %d", i)); err != nil {
			return 0, err
		}
		b, err := m.raw(8, fmt.Sprintf("the dimension count of tensor %d", i))
		if err != nil {
			return 0, err
		}
		ndim := int64(int32(binary.LittleEndian.Uint32(b)))
		if ndim < 0 || ndim > (in.Size-m.pos)/16 {
			return 0, m.layout(m.pos-8, "tensor %d has %d dimensions, more than the bytes left allow", i, ndim)
		}
		if _, err := m.raw(16*ndim+8, fmt.Sprintf("the sizes, strides and offset of tensor %d", i)); err != nil {
			return 0, err
		}
	}
	return m.pos, nil
}
