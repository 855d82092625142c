package pickle

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Options tune an analysis.
type Options struct {
	// Joblib skips the raw array bytes joblib writes after each
	// NumpyArrayWrapper BUILD. The analyzer turns it on by itself when it
	// sees the wrapper, since only joblib can load such a stream.
	Joblib bool
	// MaxPickles stops after this many complete pickles; 0 reads stacked
	// pickles until the stream ends.
	MaxPickles int
	// Depth is the nesting depth of this stream (nested pickles).
	Depth int
}

// Storage is a PyTorch storage named by a persistent id
// ('storage', type, key, location, numel).
type Storage struct {
	Type, Key, Location string
	Numel               int64
}

// Summary describes what an analysis saw.
type Summary struct {
	// Pickles counts complete pickles (ended by STOP).
	Pickles int
	// Consumed is how many bytes were read from the stream.
	Consumed int64
	// Imports are the canonical globals imported, in order of first use.
	Imports []string
	// Storages are the PyTorch storages the persistent ids name.
	Storages []Storage
	// Protocol is the highest PROTO seen (0 when none).
	Protocol int
	// Joblib is true when a joblib NumpyArrayWrapper was seen.
	Joblib bool
	// Keys holds the str items of the last pickle when it was a list of
	// str (the storage keys of a PyTorch legacy file).
	Keys []string
}

// ErrNotPickle means the stream failed before anything a loader would
// execute: it is not a pickle, and nothing was reported.
var ErrNotPickle = fmt.Errorf("not a pickle: %w", scan.ErrNotFormat)

// Limits of one analysis. Past them the analysis stops with an error: a real
// pickle never needs as much.
const (
	maxStack     = 1 << 20
	maxMemo      = 1 << 20
	maxCapture   = 64 << 20 // str/bytes bytes kept per analysis
	maxKeep      = 16 << 20 // longest single str/bytes kept
	maxPickles   = 1 << 20  // stacked pickles in one stream
	highestProto = 5
)

// machine simulates CPython's C unpickler (Modules/_pickle.c) symbolically.
type machine struct {
	ctx   context.Context
	rd    *reader
	in    scan.Input
	base  int64
	env   *scan.Env
	opts  Options
	sum   *Summary
	stack []*value
	marks []int
	memo  map[int64]*value
	proto int
	// frameEnd is where the current FRAME ends (stream offset), or -1.
	frameEnd int64
	// effects is set once a loader would have done something: imported a
	// module, called persistent_load or the extension registry.
	effects  bool
	pending  []finding.Finding
	reported map[string]bool
	captured int64
	opStart  int64
	imports  map[string]bool
	scalars  *scalars
	// extra counts bytes the current opcode consumed that are not its
	// operands (joblib array data): frames do not cover them.
	extra int64
	// framed is set once the pickle has used FRAME.
	framed bool
}

// scalars are the shared immutable values of one analysis.
type scalars struct {
	none, t, f value
	ints       [256]*value
}

// Analyze decodes pickles from r and reports findings to env at locations
// inside in (base is the offset of r's first byte within in). It returns
// ErrNotPickle, having reported nothing, when the stream fails before
// anything a loader would execute; any other error means the stream is a
// broken pickle, and the findings reported stand.
func Analyze(ctx context.Context, r io.Reader, in scan.Input, base int64, env *scan.Env, opts Options) (Summary, error) {
	size := int64(-1)
	if sr, ok := r.(*io.SectionReader); ok {
		size = sr.Size()
	}
	rd := newReader(r, size)
	return analyze(ctx, rd, in, base, env, opts)
}

func analyze(ctx context.Context, rd *reader, in scan.Input, base int64, env *scan.Env, opts Options) (Summary, error) {
	m := &machine{ctx: ctx, rd: rd, in: in, base: base, env: env, opts: opts, sum: &Summary{},
		memo: map[int64]*value{}, frameEnd: -1, reported: map[string]bool{}, imports: map[string]bool{},
		scalars: &scalars{none: value{k: kNone}, t: value{k: kBool, n: 1}, f: value{k: kBool}}}
	startPos := rd.pos
	err := m.run()
	m.sum.Consumed = rd.pos - startPos
	if errors.Is(err, ErrNotPickle) {
		return *m.sum, err
	}
	for _, f := range m.pending {
		env.Report(f)
	}
	return *m.sum, err
}

// run decodes stacked pickles until the stream ends or MaxPickles is reached.
func (m *machine) run() error {
	for {
		if m.opts.MaxPickles > 0 && m.sum.Pickles >= m.opts.MaxPickles {
			return nil
		}
		if m.sum.Pickles > 0 && m.rd.atEOF() {
			if m.rd.err != nil && m.rd.err != io.EOF {
				return m.rd.err
			}
			return nil
		}
		if m.sum.Pickles >= maxPickles {
			return fmt.Errorf("more than %d pickles in one stream", maxPickles)
		}
		startEffects := m.effects
		m.effects = false
		start := m.rd.pos
		err := m.one()
		effects := m.effects
		m.effects = m.effects || startEffects
		if err == nil {
			m.sum.Pickles++
			continue
		}
		if m.ctx.Err() != nil {
			return m.ctx.Err()
		}
		if !effects {
			if m.sum.Pickles == 0 {
				return ErrNotPickle
			}
			// Bytes after a complete pickle that do not start another one.
			left := m.rd.remaining()
			msg := "bytes after the last pickle do not form another pickle"
			if left >= 0 {
				msg = fmt.Sprintf("%d bytes after the last pickle do not form another pickle", left+(m.rd.pos-start))
			}
			m.report("pickle/trailing-data", finding.Low, start, msg+" ("+err.Error()+")", "", nil)
			return nil
		}
		m.report("pickle/truncated", finding.Low, m.opStart,
			"the pickle stream breaks before STOP ("+err.Error()+"); a loader runs every opcode before the break", "", nil)
		return fmt.Errorf("pickle at byte %d: %w", m.base+m.opStart, err)
	}
}

// loc returns a location at a decoder position.
func (m *machine) loc(pos int64) finding.Location { return m.in.At(m.base + pos) }

// report queues a finding, once per rule and global (or message).
func (m *machine) report(rule string, sev finding.Severity, pos int64, msg, global string, ev map[string]string) {
	key := rule + "\x00" + global
	if global == "" {
		key += "\x00" + msg
	}
	if m.reported[key] {
		return
	}
	m.reported[key] = true
	m.pending = append(m.pending, finding.Finding{Rule: rule, Severity: sev, Location: m.loc(pos), Message: msg, Global: global, Evidence: ev})
}

// val returns a value. Scalars are never changed after they are made, so
// None, booleans and small ints are shared: a real pickle is mostly these.
func (m *machine) val(v value) *value {
	switch {
	case v.k == kNone && v.n == 0:
		return &m.scalars.none
	case v.k == kBool && v.n == 0:
		return &m.scalars.f
	case v.k == kBool && v.n == 1:
		return &m.scalars.t
	case v.k == kInt && v.n >= 0 && v.n < int64(len(m.scalars.ints)):
		p := m.scalars.ints[v.n]
		if p == nil {
			p = new(value)
			*p = v
			m.scalars.ints[v.n] = p
		}
		return p
	}
	p := new(value)
	*p = v
	return p
}

func (m *machine) push(v *value) error {
	if len(m.stack) >= maxStack {
		return fmt.Errorf("stack deeper than %d", maxStack)
	}
	m.stack = append(m.stack, v)
	return nil
}

// fence is the lowest stack index an opcode may pop (the last MARK).
func (m *machine) fence() int {
	if len(m.marks) == 0 {
		return 0
	}
	return m.marks[len(m.marks)-1]
}

var errUnderflow = errors.New("unpickling stack underflow")

func (m *machine) pop() (*value, error) {
	if len(m.stack) <= m.fence() {
		return nil, errUnderflow
	}
	v := m.stack[len(m.stack)-1]
	m.stack = m.stack[:len(m.stack)-1]
	return v, nil
}

// pop2 pops two values: b was on top, a below it.
func (m *machine) pop2() (a, b *value, err error) {
	if b, err = m.pop(); err != nil {
		return nil, nil, err
	}
	a, err = m.pop()
	return a, b, err
}

// popTop pops the top value and returns it with the value then on top.
func (m *machine) popTop() (popped, top *value, err error) {
	if popped, err = m.pop(); err != nil {
		return nil, nil, err
	}
	top, err = m.top()
	return popped, top, err
}

func (m *machine) top() (*value, error) {
	if len(m.stack) <= m.fence() {
		return nil, errUnderflow
	}
	return m.stack[len(m.stack)-1], nil
}

// popMark pops everything above the last MARK and the MARK itself.
func (m *machine) popMark() ([]*value, error) {
	if len(m.marks) == 0 {
		return nil, errors.New("could not find MARK")
	}
	k := m.marks[len(m.marks)-1]
	m.marks = m.marks[:len(m.marks)-1]
	items := append([]*value(nil), m.stack[k:]...)
	m.stack = m.stack[:k]
	return items, nil
}

func keep(items []*value) []*value {
	if len(items) > maxItems {
		return items[:maxItems]
	}
	return items
}

// text builds a str or bytes value, keeping its content within budget.
func (m *machine) text(k kind, b []byte, n int64) *value {
	v := m.val(value{k: k, n: n})
	if b != nil && int64(len(b)) == n && m.captured+n <= maxCapture {
		v.s, v.full = string(b), true
		m.captured += n
	}
	return v
}

// operand reads an n-byte str/bytes operand, keeping it when small enough.
func (m *machine) operand(k kind, n int64) (*value, error) {
	if n < 0 {
		return nil, fmt.Errorf("negative length %d", n)
	}
	if r := m.rd.remaining(); r >= 0 && n > r {
		return nil, fmt.Errorf("operand of %d bytes but only %d remain: %w", n, r, errTruncated)
	}
	if n <= maxKeep && m.captured+n <= maxCapture {
		b, err := m.rd.read(n)
		if err != nil {
			return nil, err
		}
		return m.text(k, b, n), nil
	}
	if err := m.rd.skip(n); err != nil {
		return nil, err
	}
	return &value{k: k, n: n}, nil
}

func le(b []byte) uint64 {
	var x uint64
	for i := len(b) - 1; i >= 0; i-- {
		x = x<<8 | uint64(b[i])
	}
	return x
}

// one decodes a single pickle up to its STOP.
func (m *machine) one() error {
	m.stack = m.stack[:0]
	m.marks = m.marks[:0]
	clear(m.memo)
	m.frameEnd = -1
	m.framed = false
	for n := 0; ; n++ {
		if n&0xfff == 0 {
			if err := m.ctx.Err(); err != nil {
				return err
			}
		}
		m.opStart = m.rd.pos
		op, err := m.rd.byte()
		if err != nil {
			if err == io.EOF {
				return errTruncated
			}
			return err
		}
		if m.framed && m.frameEnd < 0 && op != opFrame && !largeOperand(op) {
			// The pickler frames every opcode but large str/bytes, so an
			// opcode outside any frame means the FRAME lengths were forged.
			m.report("pickle/frame-mismatch", finding.Medium, m.opStart,
				fmt.Sprintf("opcode %s follows the end of its FRAME without a new one: the frame lengths do not describe the opcodes", opName(op)), "", nil)
		}
		m.extra = 0
		stop, err := m.step(op)
		if err != nil {
			return err
		}
		if end := m.rd.pos - m.extra; m.frameEnd >= 0 {
			switch {
			case end == m.frameEnd:
				m.frameEnd = -1
			case m.opStart < m.frameEnd && end > m.frameEnd:
				m.report("pickle/frame-mismatch", finding.Medium, m.opStart,
					fmt.Sprintf("opcode %s crosses the end of its FRAME at byte %d: parsers disagree on what this stream contains", opName(op), m.base+m.frameEnd), "", nil)
				m.frameEnd = -1
			}
		}
		if stop {
			return nil
		}
	}
}

// step runs one opcode. It returns true at STOP.
func (m *machine) step(op byte) (bool, error) {
	switch op {
	case opMark:
		m.marks = append(m.marks, len(m.stack))
	case opStop:
		v, err := m.pop()
		if err != nil {
			return false, err
		}
		m.noteKeys(v)
		return true, nil
	case opPop:
		if len(m.marks) > 0 && m.marks[len(m.marks)-1] == len(m.stack) {
			m.marks = m.marks[:len(m.marks)-1]
			return false, nil
		}
		_, err := m.pop()
		return false, err
	case opPopMark:
		_, err := m.popMark()
		return false, err
	case opDup:
		v, err := m.top()
		if err != nil {
			return false, err
		}
		return false, m.push(v)
	case opFloat:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		if _, err := strconv.ParseFloat(strings.TrimSpace(string(l)), 64); err != nil && !isRangeErr(err) {
			return false, fmt.Errorf("FLOAT: bad value %q", l)
		}
		return false, m.push(m.val(value{k: kFloat}))
	case opInt:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		s := string(l)
		if s == "00" || s == "01" {
			return false, m.push(m.val(value{k: kBool, n: int64(s[1] - '0')}))
		}
		return false, m.pushIntText(s, "INT")
	case opLong:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		return false, m.pushIntText(strings.TrimSuffix(string(l), "L"), "LONG")
	case opBinInt:
		b, err := m.rd.small(4)
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kInt, n: int64(int32(binary.LittleEndian.Uint32(b)))}))
	case opBinInt1:
		b, err := m.rd.small(1)
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kInt, n: int64(b[0])}))
	case opBinInt2:
		b, err := m.rd.small(2)
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kInt, n: int64(binary.LittleEndian.Uint16(b))}))
	case opLong1, opLong4:
		var n int64
		if op == opLong1 {
			b, err := m.rd.small(1)
			if err != nil {
				return false, err
			}
			n = int64(b[0])
		} else {
			b, err := m.rd.small(4)
			if err != nil {
				return false, err
			}
			n = int64(int32(binary.LittleEndian.Uint32(b)))
			if n < 0 {
				return false, errors.New("LONG pickle has negative byte count")
			}
		}
		v, err := m.operand(kBytes, n)
		if err != nil {
			return false, err
		}
		iv := m.val(value{k: kInt})
		if v.full && n <= 8 {
			iv.n = signExtend([]byte(v.s))
		}
		return false, m.push(iv)
	case opNone:
		return false, m.push(m.val(value{k: kNone}))
	case opNewTrue:
		return false, m.push(m.val(value{k: kBool, n: 1}))
	case opNewFalse:
		return false, m.push(m.val(value{k: kBool}))
	case opBinFloat:
		if _, err := m.rd.small(8); err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kFloat}))
	case opString:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		s, err := unquote(l)
		if err != nil {
			return false, err
		}
		return false, m.push(m.text(kStr, s, int64(len(s))))
	case opBinString, opShortBinString, opBinBytes, opShortBinBytes, opBinUnicode, opShortBinUnicode, opBinUnicode8, opBinBytes8, opByteArray8:
		return false, m.lengthPrefixed(op)
	case opUnicode:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		s := rawUnicodeEscape(l)
		return false, m.push(m.text(kStr, []byte(s), int64(len(s))))
	case opAppend:
		v, l, err := m.popTop()
		if err != nil {
			return false, err
		}
		m.appendTo(l, v)
	case opAppends:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		l, err := m.top()
		if err != nil {
			return false, err
		}
		if l.k == kList {
			l.items = append(l.items, items[:min(len(items), max(maxItems-len(l.items), 0))]...)
		}
	case opBuild:
		state, obj, err := m.popTop()
		if err != nil {
			return false, err
		}
		return false, m.build(obj, state)
	case opGlobal, opInst:
		return false, m.global(op)
	case opStackGlobal:
		mod, name, err := m.pop2()
		if err != nil {
			return false, err
		}
		return false, m.stackGlobal(mod, name)
	case opDict:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		if len(items)%2 != 0 {
			return false, errors.New("odd number of items for DICT")
		}
		return false, m.push(m.val(value{k: kDict, items: keep(items)}))
	case opEmptyDict:
		return false, m.push(m.val(value{k: kDict}))
	case opEmptyList:
		return false, m.push(m.val(value{k: kList}))
	case opEmptyTuple:
		return false, m.push(m.val(value{k: kTuple}))
	case opEmptySet:
		return false, m.push(m.val(value{k: kSet}))
	case opList:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kList, items: keep(items)}))
	case opTuple:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kTuple, items: keep(items)}))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		items := make([]*value, n)
		for i := n - 1; i >= 0; i-- {
			v, err := m.pop()
			if err != nil {
				return false, err
			}
			items[i] = v
		}
		return false, m.push(m.val(value{k: kTuple, items: items}))
	case opFrozenSet:
		if _, err := m.popMark(); err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kSet}))
	case opAddItems:
		if _, err := m.popMark(); err != nil {
			return false, err
		}
		if _, err := m.top(); err != nil {
			return false, err
		}
	case opSetItem:
		k, v, err := m.pop2()
		if err != nil {
			return false, err
		}
		d, err := m.top()
		if err != nil {
			return false, err
		}
		m.setItem(d, k, v)
	case opSetItems:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		if len(items)%2 != 0 {
			return false, errors.New("odd number of items for SETITEMS")
		}
		d, err := m.top()
		if err != nil {
			return false, err
		}
		for i := 0; i < len(items); i += 2 {
			m.setItem(d, items[i], items[i+1])
		}
	case opGet, opBinGet, opLongBinGet:
		idx, err := m.memoIndex(op)
		if err != nil {
			return false, err
		}
		v, ok := m.memo[idx]
		if !ok {
			return false, fmt.Errorf("memo value not found at index %d", idx)
		}
		return false, m.push(v)
	case opPut, opBinPut, opLongBinPut:
		idx, err := m.memoIndex(op)
		if err != nil {
			return false, err
		}
		v, err := m.top()
		if err != nil {
			return false, err
		}
		return false, m.memoPut(idx, v)
	case opMemoize:
		v, err := m.top()
		if err != nil {
			return false, err
		}
		return false, m.memoPut(int64(len(m.memo)), v)
	case opReduce:
		args, fn, err := m.popTop()
		if err != nil {
			return false, err
		}
		res := m.call(fn, args)
		m.stack[len(m.stack)-1] = res
	case opNewObj:
		cls, args, err := m.pop2()
		if err != nil {
			return false, err
		}
		return false, m.push(m.call(cls, args))
	case opNewObjEx:
		if _, err := m.pop(); err != nil { // kwargs
			return false, err
		}
		cls, args, err := m.pop2()
		if err != nil {
			return false, err
		}
		return false, m.push(m.call(cls, args))
	case opObj:
		items, err := m.popMark()
		if err != nil {
			return false, err
		}
		if len(items) == 0 {
			return false, errUnderflow
		}
		return false, m.push(m.call(items[0], &value{k: kTuple, items: keep(items[1:])}))
	case opProto:
		b, err := m.rd.small(1)
		if err != nil {
			return false, err
		}
		if int(b[0]) > highestProto {
			return false, fmt.Errorf("unsupported pickle protocol: %d", b[0])
		}
		m.proto = int(b[0])
		m.sum.Protocol = max(m.sum.Protocol, m.proto)
	case opFrame:
		b, err := m.rd.small(8)
		if err != nil {
			return false, err
		}
		n := binary.LittleEndian.Uint64(b)
		if m.frameEnd >= 0 && m.opStart < m.frameEnd {
			m.report("pickle/frame-mismatch", finding.Medium, m.opStart,
				"a FRAME starts before the previous frame ends: parsers disagree on what this stream contains", "", nil)
		}
		m.framed = true
		if r := m.rd.remaining(); r >= 0 && n > uint64(r) {
			m.report("pickle/frame-mismatch", finding.Medium, m.opStart,
				fmt.Sprintf("FRAME of %d bytes runs past the end of the stream (%d bytes left)", n, r), "", nil)
			m.frameEnd = -1
		} else if n <= math.MaxInt64/2 {
			m.frameEnd = m.rd.pos + int64(n)
		}
	case opPersID:
		l, err := m.rd.line()
		if err != nil {
			return false, err
		}
		return false, m.push(m.val(value{k: kPID, args: m.text(kStr, l, int64(len(l)))}))
	case opBinPersID:
		pid, err := m.pop()
		if err != nil {
			return false, err
		}
		m.notePID(pid)
		return false, m.push(m.val(value{k: kPID, args: pid}))
	case opExt1, opExt2, opExt4:
		n := map[byte]int{opExt1: 1, opExt2: 2, opExt4: 4}[op]
		b, err := m.rd.small(n)
		if err != nil {
			return false, err
		}
		code := le(b)
		m.effects = true
		m.report("pickle/unresolved-global", finding.High, m.opStart,
			fmt.Sprintf("%s %d imports whatever copyreg's extension registry maps that code to; the scanner cannot know it", opName(op), code), "", nil)
		return false, m.push(m.val(value{k: kGlobal, s: fmt.Sprintf("<extension %d>", code)}))
	case opNextBuffer:
		return false, m.push(m.val(value{k: kBytes}))
	case opReadonlyBuffer:
		_, err := m.top()
		return false, err
	default:
		return false, fmt.Errorf("invalid load key, %q", op)
	}
	return false, nil
}

func isRangeErr(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && ne.Err == strconv.ErrRange
}

func signExtend(b []byte) int64 {
	if len(b) == 0 {
		return 0
	}
	x := le(b)
	if b[len(b)-1]&0x80 != 0 && len(b) < 8 {
		x |= ^uint64(0) << (8 * uint(len(b)))
	}
	return int64(x)
}

func (m *machine) pushIntText(s, what string) error {
	s = strings.TrimSpace(s)
	v := m.val(value{k: kInt})
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		v.n = n
	} else if _, ok := new(big.Int).SetString(s, 0); !ok {
		return fmt.Errorf("%s: bad value %q", what, s)
	}
	return m.push(v)
}

func (m *machine) memoIndex(op byte) (int64, error) {
	switch op {
	case opGet, opPut:
		l, err := m.rd.line()
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(l)), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: bad memo index %q", opName(op), l)
		}
		return n, nil
	case opBinGet, opBinPut:
		b, err := m.rd.small(1)
		if err != nil {
			return 0, err
		}
		return int64(b[0]), nil
	}
	b, err := m.rd.small(4)
	if err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint32(b)), nil
}

func (m *machine) memoPut(idx int64, v *value) error {
	if _, ok := m.memo[idx]; !ok && len(m.memo) >= maxMemo {
		return fmt.Errorf("memo larger than %d entries", maxMemo)
	}
	m.memo[idx] = v
	return nil
}

func (m *machine) lengthPrefixed(op byte) error {
	var n int64
	switch op {
	case opShortBinString, opShortBinBytes, opShortBinUnicode:
		b, err := m.rd.small(1)
		if err != nil {
			return err
		}
		n = int64(b[0])
	case opBinString:
		b, err := m.rd.small(4)
		if err != nil {
			return err
		}
		n = int64(int32(binary.LittleEndian.Uint32(b)))
		if n < 0 {
			return errors.New("BINSTRING pickle has negative byte count")
		}
	case opBinBytes, opBinUnicode:
		b, err := m.rd.small(4)
		if err != nil {
			return err
		}
		n = int64(binary.LittleEndian.Uint32(b))
	default: // 8-byte lengths
		b, err := m.rd.small(8)
		if err != nil {
			return err
		}
		u := binary.LittleEndian.Uint64(b)
		if u > math.MaxInt64 {
			return fmt.Errorf("%s length %d too large", opName(op), u)
		}
		n = int64(u)
	}
	k := kStr
	if op == opBinBytes || op == opShortBinBytes || op == opBinBytes8 || op == opByteArray8 {
		k = kBytes
	}
	v, err := m.operand(k, n)
	if err != nil {
		return err
	}
	return m.push(v)
}

func (m *machine) appendTo(l, v *value) {
	if l.k == kList && len(l.items) < maxItems {
		l.items = append(l.items, v)
	}
}

func (m *machine) setItem(d, k, v *value) {
	if d.k == kDict && len(d.items) < 2*maxItems {
		d.items = append(d.items, k, v)
	}
}

// noteKeys records a final list of str (PyTorch legacy storage keys).
func (m *machine) noteKeys(v *value) {
	if v == nil || v.k != kList {
		return
	}
	keys := make([]string, 0, len(v.items))
	for _, it := range v.items {
		s, ok := it.str()
		if !ok {
			return
		}
		keys = append(keys, s)
	}
	m.sum.Keys = keys
}

// notePID records a PyTorch storage persistent id.
func (m *machine) notePID(pid *value) {
	if pid == nil || pid.k != kTuple || len(pid.items) < 5 {
		return
	}
	if s, ok := pid.items[0].str(); !ok || s != "storage" {
		return
	}
	st := Storage{}
	if t := pid.items[1]; t.k == kGlobal {
		st.Type = t.s
	}
	st.Key, _ = pid.items[2].str()
	st.Location, _ = pid.items[3].str()
	if pid.items[4].k == kInt {
		st.Numel = pid.items[4].n
	}
	m.sum.Storages = append(m.sum.Storages, st)
}

// global handles GLOBAL and INST: two text lines naming module and name.
func (m *machine) global(op byte) error {
	modLine, err := m.rd.line()
	if err != nil {
		return err
	}
	mod := string(modLine)
	nameLine, err := m.rd.line()
	if err != nil {
		return err
	}
	name := string(nameLine)
	// _pickle.c decodes GLOBAL operands as strict UTF-8 and INST operands
	// as ASCII; a failure raises before anything is imported.
	if op == opInst {
		for _, s := range []string{mod, name} {
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					return fmt.Errorf("INST operand %q is not ASCII", s)
				}
			}
		}
	} else if !utf8.ValidString(mod) || !utf8.ValidString(name) {
		return fmt.Errorf("GLOBAL operand %q %q is not valid UTF-8", mod, name)
	}
	if !identifier(mod) || !identifier(name) {
		// __import__ of such a name fails: nothing is imported.
		return fmt.Errorf("%s operand %q %q is not a module and attribute name", opName(op), mod, name)
	}
	g := m.importGlobal(mod, name, opName(op))
	if op == opGlobal {
		return m.push(g)
	}
	items, err := m.popMark()
	if err != nil {
		return err
	}
	return m.push(m.call(g, &value{k: kTuple, items: keep(items)}))
}

// stackGlobal handles STACK_GLOBAL: module and name come from the stack.
func (m *machine) stackGlobal(mod, name *value) error {
	ms, ok1 := mod.str()
	ns, ok2 := name.str()
	if ok1 && ok2 {
		if !identifier(ms) || !identifier(ns) {
			return fmt.Errorf("STACK_GLOBAL operand %q %q is not a module and attribute name", ms, ns)
		}
		return m.push(m.importGlobal(ms, ns, "STACK_GLOBAL"))
	}
	// CPython raises unless both are str; a value the scanner could not
	// resolve may well be one at load time.
	m.effects = true
	desc := mod.describe() + " . " + name.describe()
	m.report("pickle/unresolved-global", finding.Critical, m.opStart,
		"STACK_GLOBAL imports a name built from values the scanner cannot resolve to constant strings ("+desc+")", desc, nil)
	return m.push(m.val(value{k: kGlobal, s: desc}))
}

// importGlobal judges an import by the policy and returns its value.
func (m *machine) importGlobal(mod, name, via string) *value {
	m.effects = true
	v := m.env.Policy.Global(mod, name)
	if !m.imports[v.Canonical] {
		m.imports[v.Canonical] = true
		m.sum.Imports = append(m.sum.Imports, v.Canonical)
	}
	if v.Canonical == "joblib.numpy_pickle.NumpyArrayWrapper" || v.Canonical == "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper" {
		m.sum.Joblib = true
	}
	if !v.Safe {
		rule := "pickle/unsafe-global"
		if v.Matched != "" && v.Severity >= finding.High {
			rule = "pickle/dangerous-global"
		}
		written := mod + "." + name
		msg := fmt.Sprintf("imports %s", v.Resolved)
		if written != v.Resolved {
			msg += " (written " + written + ")"
		}
		msg += ": " + v.Reason
		m.report(rule, v.Severity, m.opStart, msg, v.Resolved, map[string]string{"opcode": via, "module": mod, "name": name})
	}
	return m.val(value{k: kGlobal, s: v.Canonical})
}

// nestedLoaders are callables that unpickle the bytes they are given.
var nestedLoaders = map[string]bool{
	"pickle.loads": true, "pickle._loads": true, "pickle.load": true, "pickle._load": true,
	"pickle.Unpickler": true, "pickle._Unpickler": true,
	"dill.loads": true, "dill._dill.loads": true, "cloudpickle.loads": true,
	"torch.storage._load_from_bytes": true, "torch.load": true, "torch.serialization.load": true,
	"joblib.load": true, "numpy.loads": true, "shelve.Shelf": true,
}

// call models calling fn with args: decoders of bytes produce bytes, so that
// a nested pickle behind base64 or _codecs.encode is still found, and
// unpicklers of bytes get their argument scanned as a pickle.
func (m *machine) call(fn, args *value) *value {
	res := &value{k: kCall, fn: fn, args: args}
	if fn == nil || fn.k != kGlobal {
		return res
	}
	a0 := args.item(0)
	switch fn.s {
	case "codecs.encode":
		// protocol 2 writes bytes as _codecs.encode(str, 'latin1').
		if s, ok := a0.str(); ok {
			enc, _ := args.item(1).str()
			if enc == "" || strings.EqualFold(enc, "latin1") || strings.EqualFold(enc, "latin-1") || strings.EqualFold(enc, "iso-8859-1") {
				if b, ok := latin1(s); ok {
					return m.text(kBytes, b, int64(len(b)))
				}
			}
			if strings.EqualFold(enc, "utf-8") || strings.EqualFold(enc, "utf8") {
				return m.text(kBytes, []byte(s), int64(len(s)))
			}
		}
	case "builtins.bytes", "builtins.bytearray":
		if a0 != nil && (a0.k == kBytes || a0.k == kStr) {
			c := *a0
			c.k = kBytes
			return &c
		}
	case "base64.b64decode", "base64.standard_b64decode", "base64.decodebytes", "binascii.a2b_base64", "base64.urlsafe_b64decode":
		if b, ok := bytesOf(a0); ok {
			enc := base64.StdEncoding
			if fn.s == "base64.urlsafe_b64decode" {
				enc = base64.URLEncoding
			}
			if d, err := enc.DecodeString(strings.Map(dropSpace, string(b))); err == nil {
				return m.text(kBytes, d, int64(len(d)))
			}
		}
	case "base64.b16decode", "binascii.unhexlify", "binascii.a2b_hex", "builtins.bytes.fromhex", "builtins.bytearray.fromhex":
		if b, ok := bytesOf(a0); ok {
			if d, err := hex.DecodeString(strings.Map(dropSpace, string(b))); err == nil {
				return m.text(kBytes, d, int64(len(d)))
			}
		}
	case "codecs.decode":
		if b, ok := bytesOf(a0); ok {
			enc, _ := args.item(1).str()
			switch strings.ToLower(enc) {
			case "base64", "base64_codec":
				if d, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, string(b))); err == nil {
					return m.text(kBytes, d, int64(len(d)))
				}
			case "hex", "hex_codec":
				if d, err := hex.DecodeString(string(b)); err == nil {
					return m.text(kBytes, d, int64(len(d)))
				}
			}
		}
	}
	if nestedLoaders[fn.s] {
		m.nested(fn, a0)
	}
	return res
}

func dropSpace(r rune) rune {
	if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
		return -1
	}
	return r
}

func bytesOf(v *value) ([]byte, bool) {
	if v == nil || !v.full || (v.k != kBytes && v.k != kStr) {
		return nil, false
	}
	return []byte(v.s), true
}

func latin1(s string) ([]byte, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}

// nested scans the bytes handed to an unpickler as a pickle of their own.
func (m *machine) nested(fn, arg *value) {
	at := m.opStart
	b, ok := bytesOf(arg)
	if !ok {
		if arg != nil && (arg.k == kBytes || arg.k == kStr) {
			m.report("pickle/nested-pickle", finding.High, at,
				fmt.Sprintf("%s is handed %d bytes too large to keep; the nested pickle was not scanned", fn.s, arg.n), "", nil)
		}
		return
	}
	m.report("pickle/nested-pickle", finding.High, at,
		fmt.Sprintf("%s unpickles %d bytes embedded in this pickle; they are scanned as a nested pickle", fn.s, len(b)), "", nil)
	if m.opts.Depth+1 > m.env.Limits.MaxPickleDepth {
		m.report("pickle/nested-pickle", finding.High, at,
			fmt.Sprintf("nested pickles deeper than %d; the innermost was not scanned", m.env.Limits.MaxPickleDepth), "", nil)
		return
	}
	in := m.in
	in.Loc = m.in.At(-1)
	in.Loc.Members = append(in.Loc.Members, fmt.Sprintf("nested-pickle@%d", m.base+at))
	in.Size = int64(len(b))
	in.R = bytes.NewReader(b)
	sub := newReader(bytes.NewReader(b), int64(len(b)))
	_, err := analyze(m.ctx, sub, in, 0, m.env, Options{Depth: m.opts.Depth + 1})
	if err != nil && !errors.Is(err, ErrNotPickle) {
		m.env.Fail(in.At(-1), err)
	}
}

// build models BUILD: setting the state of obj.
func (m *machine) build(obj, state *value) error {
	switch obj.k {
	case kGlobal:
		// BUILD on a class or module object sets its attributes: later
		// imports of it resolve to whatever the pickle put there.
		msg := fmt.Sprintf("BUILD sets attributes of the class or module %s itself, redirecting later uses of it", obj.s)
		if state != nil && state.k == kDict {
			var names []string
			for i := 0; i < len(state.items); i += 2 {
				if s, ok := state.items[i].str(); ok {
					names = append(names, s)
				}
			}
			if len(names) > 0 {
				msg += " (" + strings.Join(names, ", ") + ")"
			}
		}
		m.report("pickle/module-overwrite", finding.Critical, m.opStart, msg, obj.s, nil)
	case kCall:
		obj.state = state
		if g := obj.calledGlobal(); g == "joblib.numpy_pickle.NumpyArrayWrapper" || g == "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper" {
			return m.joblibArray(obj, state)
		}
	}
	return nil
}

// identifier reports whether s is a dotted Python name: what __import__ and
// getattr can resolve. Anything else fails to import, so no code runs.
func identifier(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i, r := range part {
			letter := r == '_' || unicode.IsLetter(r)
			if !letter && (i == 0 || !unicode.IsDigit(r)) {
				return false
			}
		}
	}
	return true
}

// largeOperand reports whether op may carry a str/bytes operand that the
// pickler writes outside frames (Pickler._write_large_bytes).
func largeOperand(op byte) bool {
	switch op {
	case opBinBytes, opBinBytes8, opBinUnicode, opBinUnicode8, opByteArray8, opBinString:
		return true
	}
	return false
}
