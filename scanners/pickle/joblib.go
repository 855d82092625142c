package pickle

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// joblibArray skips the raw array bytes joblib's NumpyPickler writes right
// after a NumpyArrayWrapper's BUILD (joblib/numpy_pickle.py write_array and
// read_array): an optional padding-length byte and padding when the state
// has numpy_array_alignment_bytes, then shape×itemsize bytes; or, for object
// arrays, a whole pickle of its own, which is analysed like any other.
func (m *machine) joblibArray(wrapper, state *value) error {
	m.sum.Joblib = true
	start := m.rd.pos
	defer func() { m.extra += m.rd.pos - start }()
	// joblib's load_build replaces the wrapper with the array it reads.
	m.stack[len(m.stack)-1] = &value{k: kCall, fn: &value{k: kGlobal, s: "numpy.ndarray"}}
	dtype := state.get("dtype")
	descr, itemsize, object, err := dtypeSize(dtype)
	if err != nil {
		return fmt.Errorf("joblib array at byte %d: %w", m.base+m.opStart, err)
	}
	if object {
		sub := &machine{ctx: m.ctx, rd: m.rd, in: m.in, base: m.base, env: m.env,
			opts: Options{MaxPickles: 1, Depth: m.opts.Depth}, sum: &Summary{}, memo: map[int64]*value{},
			frameEnd: -1, reported: m.reported, imports: m.imports, captured: m.captured, scalars: m.scalars}
		err := sub.run()
		m.pending = append(m.pending, sub.pending...)
		m.sum.Imports = append(m.sum.Imports, sub.sum.Imports...)
		m.captured = sub.captured
		m.effects = m.effects || sub.effects
		if errors.Is(err, ErrNotPickle) {
			return fmt.Errorf("joblib object array at byte %d is not followed by a pickle", m.base+m.opStart)
		}
		return err
	}
	count := int64(1)
	shape := state.get("shape")
	if shape == nil || shape.k != kTuple {
		return fmt.Errorf("joblib array at byte %d has no shape tuple", m.base+m.opStart)
	}
	for _, d := range shape.items {
		if d.k != kInt || d.n < 0 {
			return fmt.Errorf("joblib array at byte %d has a bad dimension %s", m.base+m.opStart, d.describe())
		}
		if d.n != 0 && count > math.MaxInt64/d.n {
			return fmt.Errorf("joblib array at byte %d: shape overflows", m.base+m.opStart)
		}
		count *= d.n
	}
	if itemsize != 0 && count > math.MaxInt64/itemsize {
		return fmt.Errorf("joblib array at byte %d: size overflows", m.base+m.opStart)
	}
	if state.get("numpy_array_alignment_bytes") != nil {
		if a := state.get("numpy_array_alignment_bytes"); a.k != kNone {
			pad, err := m.rd.small(1)
			if err != nil {
				return err
			}
			if err := m.rd.skip(int64(pad[0])); err != nil {
				return err
			}
		}
	}
	if err := m.rd.skip(count * itemsize); err != nil {
		return fmt.Errorf("joblib array %s%v at byte %d: %w", descr, count, m.base+m.opStart, err)
	}
	return nil
}

// dtypeSize reads the item size of a numpy.dtype(...) call value with its
// BUILD state (version, byteorder, subarray, names, fields, elsize, ...).
func dtypeSize(dt *value) (descr string, itemsize int64, object bool, err error) {
	if dt == nil || dt.k != kCall || !dt.fn.isGlobalNamed("numpy.dtype") {
		return "", 0, false, errors.New("array dtype is not a numpy.dtype")
	}
	descr, ok := dt.args.item(0).str()
	if !ok || descr == "" {
		return "", 0, false, errors.New("array dtype has no type string")
	}
	if strings.ContainsRune(descr, 'O') {
		return descr, 0, true, nil
	}
	kind := strings.TrimLeft(descr, "<>=|")
	if kind == "" {
		return descr, 0, false, fmt.Errorf("dtype %q", descr)
	}
	digits := strings.TrimLeft(kind[1:], "")
	if n, err := strconv.ParseInt(digits, 10, 64); err == nil && n > 0 && strings.ContainsRune("biufcmMSUV?", rune(kind[0])) {
		if kind[0] == 'U' {
			// numpy's reduce gives the UCS-4 length in bytes ("U20" = 5 chars).
			return descr, n, false, nil
		}
		return descr, n, false, nil
	}
	if kind == "?" {
		return descr, 1, false, nil
	}
	// Flexible and structured types carry their size in the state.
	if st := dt.state; st != nil && st.k == kTuple && len(st.items) >= 6 && st.items[5].k == kInt && st.items[5].n > 0 {
		return descr, st.items[5].n, false, nil
	}
	return descr, 0, false, fmt.Errorf("cannot size dtype %q", descr)
}
