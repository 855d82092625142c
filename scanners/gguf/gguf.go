// Package gguf checks GGUF files (llama.cpp and friends) without loading
// tensor data: the header, every metadata key and value, and the tensor
// infos, with each count and length bounded by the bytes left in the file
// (the unchecked counts behind CVE-2024-25664..25668), array nesting
// limited, duplicate keys and tensor names refused, and tensors checked to
// be aligned, inside the file and not overlapping. Chat templates
// (tokenizer.chat_template*) are checked for template injection.
package gguf

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
)

// Value types of GGUF metadata.
const (
	typeUint8 = iota
	typeInt8
	typeUint16
	typeInt16
	typeUint32
	typeInt32
	typeFloat32
	typeBool
	typeString
	typeArray
	typeUint64
	typeInt64
	typeFloat64
	numTypes
)

var typeNames = [numTypes]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// fixedSize is the encoded size of scalar types (0 for string and array).
var fixedSize = [numTypes]uint64{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

// Limits on what one file may declare.
const (
	// MaxTensors bounds the tensor count (real models have a few thousand).
	MaxTensors = 1 << 20
	// MaxKV bounds the metadata key count.
	MaxKV = 1 << 20
	// MaxNesting bounds arrays of arrays.
	MaxNesting = 4
	// MaxDims is GGML_MAX_DIMS.
	MaxDims = 4
	// MaxName is GGML_MAX_NAME: tensor names must be shorter.
	MaxName = 64
	// MaxKeyLen bounds metadata key lengths.
	MaxKeyLen = 64 << 10
	// MaxTemplate bounds the chat templates read and checked.
	MaxTemplate = 16 << 20
	// maxMetaString bounds general.* strings recorded as metadata.
	maxMetaString = 64 << 10
	// DefaultAlignment applies when general.alignment is absent.
	DefaultAlignment = 32
	maxProblems      = 64
)

// ggmlType is a tensor element type: its block size in elements and the
// bytes per block.
type ggmlType struct {
	name        string
	block, size uint64
}

// ggmlTypes is indexed by the ggml_type enum; zero entries were removed
// from ggml and are refused.
var ggmlTypes = [...]ggmlType{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144}, 13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292}, 16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74},
	18: {"IQ3_XXS", 256, 98}, 19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56},
	30: {"BF16", 1, 2}, 31: {"Q4_0_4_4", 32, 18}, 32: {"Q4_0_4_8", 32, 18}, 33: {"Q4_0_8_8", 32, 18},
	34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66}, 36: {"IQ4_NL_4_4", 32, 18}, 37: {"IQ4_NL_4_8", 32, 18},
	38: {"IQ4_NL_8_8", 32, 18}, 39: {"MXFP4", 32, 17},
}

// Rule ids this package reports.
const (
	RuleInvalidMetadata = "gguf/invalid-metadata"
	RuleDuplicateKey    = "gguf/duplicate-key"
	RuleInvalidTensor   = "gguf/invalid-tensor"
	RuleTensorLayout    = "gguf/tensor-layout"
	RuleTrailingData    = "gguf/trailing-data"
)

// TrailingMember names the bytes after the last tensor when they are handed
// back to the registry as a member.
const TrailingMember = "(trailing data)"

// Tensor is one tensor info.
type Tensor struct {
	Name   string
	Dims   []uint64
	Type   uint32
	Offset uint64 // relative to the data section
	// Bytes is the tensor's data size (0 when it cannot be computed).
	Bytes uint64
	// Elements is the product of Dims (0 when it overflows).
	Elements uint64
	// At is the file offset of the tensor info.
	At    int64
	valid bool
}

// Template is a chat template found in the metadata.
type Template struct {
	Key  string
	Text string
	At   int64 // file offset of the text
}

// Problem is a violation a loader refuses, at a file offset.
type Problem struct {
	Rule string
	Sev  finding.Severity
	Off  int64
	Msg  string
}

// File is a parsed GGUF header.
type File struct {
	Version   uint32
	KVCount   uint64
	Tensors   []Tensor
	Alignment uint64
	// DataStart is the file offset of the tensor data section.
	DataStart int64
	// General holds general.* scalars (strings and numbers).
	General   map[string]any
	Templates []Template
	// Parameters is the sum of the tensors' element counts (saturating).
	Parameters uint64
	Problems   []Problem
	Truncated  int
}

func (f *File) problem(rule string, sev finding.Severity, off int64, format string, args ...any) {
	if len(f.Problems) >= maxProblems {
		f.Truncated++
		return
	}
	f.Problems = append(f.Problems, Problem{Rule: rule, Sev: sev, Off: off, Msg: fmt.Sprintf(format, args...)})
}

// Parse reads the header, metadata and tensor infos of a GGUF stream of the
// given size. Malformed structure is an error (a *scan.FormatError naming
// the offset); violations it can step over are recorded as Problems.
func Parse(ctx context.Context, r io.ReaderAt, size int64) (*File, error) {
	rd := &reader{r: r, size: size}
	magic, err := rd.bytes(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != "GGUF" {
		return nil, scan.ErrNotFormat
	}
	f := &File{Alignment: DefaultAlignment, General: map[string]any{}}
	if f.Version, err = rd.u32("version"); err != nil {
		return nil, err
	}
	if f.Version < 1 || f.Version > 3 {
		return nil, rd.fail(4, "unsupported version (big-endian or future GGUF?)", f.Version)
	}
	rd.wide = f.Version >= 2
	nt, err := rd.count("tensor count")
	if err != nil {
		return nil, err
	}
	nkv, err := rd.count("metadata count")
	if err != nil {
		return nil, err
	}
	f.KVCount = nkv
	// Each key-value pair takes at least a key length, a type and one
	// byte; each tensor info a name length, n_dims, a type and an offset.
	minKV, minTensor := uint64(rd.lenSize()+4+1), uint64(rd.lenSize()+4+4+8)
	if nkv > MaxKV || nkv > uint64(rd.left())/minKV {
		return nil, rd.fail(rd.off-rd.lenSize(), fmt.Sprintf("metadata count exceeds what %d bytes can hold (limit %d)", rd.left(), MaxKV), nkv)
	}
	if nt > MaxTensors || nt > uint64(rd.left())/minTensor {
		return nil, rd.fail(rd.off-2*rd.lenSize(), fmt.Sprintf("tensor count exceeds what %d bytes can hold (limit %d)", rd.left(), MaxTensors), nt)
	}
	if err := f.readKVs(ctx, rd, nkv); err != nil {
		return nil, err
	}
	if err := f.readTensors(ctx, rd, nt); err != nil {
		return nil, err
	}
	pad := (f.Alignment - uint64(rd.off)%f.Alignment) % f.Alignment
	f.DataStart = rd.off + int64(pad)
	f.layout(size)
	return f, nil
}

func (f *File) readKVs(ctx context.Context, rd *reader, n uint64) error {
	seen := make(map[string]int64, min(n, 4096))
	for i := uint64(0); i < n; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		at := rd.off
		key, _, long, err := rd.str(MaxKeyLen, "metadata key")
		if err != nil {
			return err
		}
		if long {
			return rd.fail(at, fmt.Sprintf("metadata key longer than %d bytes", MaxKeyLen), nil)
		}
		if first, dup := seen[key]; dup {
			f.problem(RuleDuplicateKey, finding.Medium, at, "metadata key %q appears twice (first at byte %d); loaders disagree on which value counts", key, first)
		} else {
			seen[key] = at
		}
		typ, err := rd.u32("value type")
		if err != nil {
			return err
		}
		if typ >= numTypes {
			return rd.fail(rd.off-4, fmt.Sprintf("metadata key %q has an unknown value type", key), typ)
		}
		if err := f.value(ctx, rd, key, typ, at); err != nil {
			return err
		}
	}
	return nil
}

// value reads one top-level value and keeps what the scanner needs.
func (f *File) value(ctx context.Context, rd *reader, key string, typ uint32, at int64) error {
	isTemplate := key == "tokenizer.chat_template" || strings.HasPrefix(key, "tokenizer.chat_template.")
	general := strings.HasPrefix(key, "general.")
	switch {
	case typ == typeString:
		limit := 0
		switch {
		case isTemplate:
			limit = MaxTemplate
		case general:
			limit = maxMetaString
		}
		s, sat, long, err := rd.str(limit, "value of "+key)
		if err != nil {
			return err
		}
		switch {
		case isTemplate && long:
			f.problem(RuleInvalidMetadata, finding.Medium, sat, "chat template %s is larger than %d bytes and was not checked", key, MaxTemplate)
		case isTemplate:
			f.Templates = append(f.Templates, Template{Key: key, Text: s, At: sat})
		case general && !long:
			f.General[strings.TrimPrefix(key, "general.")] = s
		}
		if key == "general.alignment" {
			f.problem(RuleInvalidMetadata, finding.Medium, at, "general.alignment is a string, not uint32")
		}
		return nil
	case typ == typeArray:
		if isTemplate {
			f.problem(RuleInvalidMetadata, finding.Low, at, "%s is an array, not a string", key)
		}
		return f.array(ctx, rd, key, 1)
	}
	b, err := rd.bytes(int(fixedSize[typ]), "value of "+key)
	if err != nil {
		return err
	}
	v := scalar(typ, b)
	if key == "general.alignment" {
		a, ok := v.(uint64)
		switch {
		case typ != typeUint32:
			f.problem(RuleInvalidMetadata, finding.Medium, at, "general.alignment is %s, not uint32", typeNames[typ])
		case !ok || a == 0 || a&(a-1) != 0:
			f.problem(RuleInvalidMetadata, finding.Medium, at, "general.alignment %v is not a power of two", v)
		default:
			f.Alignment = a
		}
	}
	if isTemplate {
		f.problem(RuleInvalidMetadata, finding.Low, at, "%s is %s, not a string", key, typeNames[typ])
	}
	if general && typ != typeBool {
		f.General[strings.TrimPrefix(key, "general.")] = v
	}
	return nil
}

// scalar decodes a fixed-size value as uint64, int64, float64 or bool.
func scalar(typ uint32, b []byte) any {
	le := func() uint64 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		return u
	}
	switch typ {
	case typeUint8, typeUint16, typeUint32, typeUint64:
		return le()
	case typeInt8:
		return int64(int8(b[0]))
	case typeInt16:
		return int64(int16(le()))
	case typeInt32:
		return int64(int32(le()))
	case typeInt64:
		return int64(le())
	case typeFloat32:
		return float64(math.Float32frombits(uint32(le())))
	case typeFloat64:
		return math.Float64frombits(le())
	case typeBool:
		return b[0] != 0
	}
	return nil
}

// array skips an array's elements, bounding the count by the bytes left.
func (f *File) array(ctx context.Context, rd *reader, key string, depth int) error {
	at := rd.off
	et, err := rd.u32("array element type")
	if err != nil {
		return err
	}
	if et >= numTypes {
		return rd.fail(at, fmt.Sprintf("array in %q has an unknown element type", key), et)
	}
	n, err := rd.count("array length")
	if err != nil {
		return err
	}
	least := fixedSize[et]
	switch et {
	case typeString:
		least = uint64(rd.lenSize())
	case typeArray:
		least = 4 + uint64(rd.lenSize())
	}
	if n > uint64(rd.left())/least {
		return rd.fail(rd.off-rd.lenSize(), fmt.Sprintf("array in %q claims more elements than %d bytes can hold", key, rd.left()), n)
	}
	switch et {
	case typeString:
		for i := uint64(0); i < n; i++ {
			if i%65536 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			l, err := rd.count("string length")
			if err != nil {
				return err
			}
			if err := rd.skip(l, "string in "+key); err != nil {
				return err
			}
		}
		return nil
	case typeArray:
		if depth >= MaxNesting {
			return rd.fail(at, fmt.Sprintf("arrays in %q nest deeper than %d", key, MaxNesting), nil)
		}
		for i := uint64(0); i < n; i++ {
			if err := f.array(ctx, rd, key, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return rd.skip(n*least, "array "+key)
}

func (f *File) readTensors(ctx context.Context, rd *reader, n uint64) error {
	seen := make(map[string]int64, min(n, 4096))
	f.Tensors = make([]Tensor, 0, min(n, 4096))
	for i := uint64(0); i < n; i++ {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		t := Tensor{At: rd.off, valid: true}
		name, _, long, err := rd.str(MaxKeyLen, "tensor name")
		if err != nil {
			return err
		}
		if long {
			return rd.fail(t.At, fmt.Sprintf("tensor name longer than %d bytes", MaxKeyLen), nil)
		}
		t.Name = name
		if len(name) >= MaxName {
			f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor name %q is %d bytes; ggml allows at most %d", name, len(name), MaxName-1)
		}
		if first, dup := seen[name]; dup {
			f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q is declared twice (first at byte %d)", name, first)
			t.valid = false
		} else {
			seen[name] = t.At
		}
		nd, err := rd.u32("n_dims")
		if err != nil {
			return err
		}
		if nd > MaxDims {
			return rd.fail(rd.off-4, fmt.Sprintf("tensor %q has more than %d dimensions", name, MaxDims), nd)
		}
		t.Dims = make([]uint64, nd)
		for d := range t.Dims {
			if t.Dims[d], err = rd.count("dimension"); err != nil {
				return err
			}
		}
		if t.Type, err = rd.u32("tensor type"); err != nil {
			return err
		}
		if t.Offset, err = rd.u64("tensor offset"); err != nil {
			return err
		}
		f.sizeTensor(&t)
		f.Tensors = append(f.Tensors, t)
	}
	return nil
}

// sizeTensor computes the element count and byte size with checked math,
// as gguf_init does.
func (f *File) sizeTensor(t *Tensor) {
	if int(t.Type) >= len(ggmlTypes) || ggmlTypes[t.Type].block == 0 {
		f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q has unknown type %d", t.Name, t.Type)
		t.valid = false
		return
	}
	gt := ggmlTypes[t.Type]
	elems := uint64(1)
	for _, d := range t.Dims {
		hi, lo := bits.Mul64(elems, d)
		if d > math.MaxInt64 || hi != 0 || lo > math.MaxInt64 {
			f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q: dimensions %v overflow", t.Name, t.Dims)
			t.valid = false
			return
		}
		elems = lo
	}
	t.Elements = elems
	if len(t.Dims) > 0 && t.Dims[0]%gt.block != 0 {
		f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q: first dimension %d is not a multiple of the %s block size %d", t.Name, t.Dims[0], gt.name, gt.block)
		t.valid = false
		return
	}
	t.Bytes = elems / gt.block * gt.size
	if f.Parameters+elems < f.Parameters {
		f.Parameters = math.MaxUint64
	} else {
		f.Parameters += elems
	}
}

// layout checks that tensors are aligned, inside the file and disjoint.
func (f *File) layout(size int64) {
	if len(f.Tensors) == 0 {
		return
	}
	if f.DataStart > size {
		f.problem(RuleInvalidTensor, finding.Medium, size, "the tensor data section would start at byte %d, past the end of the file", f.DataStart)
		return
	}
	avail := uint64(size - f.DataStart)
	var expect uint64
	unordered := 0
	type span struct {
		begin, end uint64
		i          int
	}
	var spans []span
	for i, t := range f.Tensors {
		if !t.valid {
			continue
		}
		if t.Offset%f.Alignment != 0 {
			f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		end := t.Offset + t.Bytes
		if end < t.Offset || end > avail {
			f.problem(RuleInvalidTensor, finding.Medium, t.At, "tensor %q: data [%d,+%d) runs past the end of the file (%d bytes of data)", t.Name, t.Offset, t.Bytes, avail)
			f.Tensors[i].valid = false
			continue
		}
		if t.Offset != expect {
			unordered++
		}
		expect = t.Offset + alignUp(t.Bytes, f.Alignment)
		spans = append(spans, span{t.Offset, end, i})
	}
	if unordered > 0 {
		f.problem(RuleTensorLayout, finding.Low, f.Tensors[0].At, "%d tensors are not laid out back to back in declaration order, as llama.cpp requires (gaps can hide data)", unordered)
	}
	sort.Slice(spans, func(a, b int) bool { return spans[a].begin < spans[b].begin })
	for k := 1; k < len(spans); k++ {
		p, s := spans[k-1], spans[k]
		if s.begin < p.end {
			f.problem(RuleInvalidTensor, finding.Medium, f.Tensors[s.i].At, "tensor %q at data offset %d overlaps tensor %q, which ends at %d", f.Tensors[s.i].Name, s.begin, f.Tensors[p.i].Name, p.end)
		}
		if s.end < p.end {
			spans[k] = p // keep the farthest end
		}
	}
}

// allValid reports whether every tensor's size and place are known.
func (f *File) allValid() bool {
	for _, t := range f.Tensors {
		if !t.valid {
			return false
		}
	}
	return true
}

// DataEnd returns the end of the last tensor's data, aligned.
func (f *File) DataEnd() int64 {
	end := uint64(f.DataStart)
	for _, t := range f.Tensors {
		if t.valid {
			if e := uint64(f.DataStart) + t.Offset + t.Bytes; e >= t.Offset && e > end {
				end = e
			}
		}
	}
	if a := alignUp(end, f.Alignment); a >= end {
		end = a
	}
	return int64(min(end, math.MaxInt64))
}

func alignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}

// Scanner is the scan.Scanner for GGUF files.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "gguf" }

// Match implements scan.Scanner: the magic "GGUF".
func (Scanner) Match(head []byte, size int64) bool {
	return size >= 8 && len(head) >= 4 && string(head[:4]) == "GGUF"
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	f, err := Parse(ctx, in.R, in.Size)
	if err != nil {
		return err
	}
	for _, p := range f.Problems {
		env.Report(finding.Finding{Rule: p.Rule, Severity: p.Sev, Location: in.At(p.Off), Message: p.Msg})
	}
	if f.Truncated > 0 {
		env.Report(finding.Finding{Rule: RuleInvalidTensor, Severity: finding.Medium, Location: in.At(-1),
			Message: fmt.Sprintf("%d more problems not listed", f.Truncated)})
	}
	env.SetMeta(in, "gguf.version", f.Version)
	env.SetMeta(in, "gguf.tensors", len(f.Tensors))
	env.SetMeta(in, "gguf.parameters", f.Parameters)
	if dts := f.dtypes(); len(dts) > 0 {
		env.SetMeta(in, "gguf.dtypes", dts)
	}
	for k, v := range f.General {
		env.SetMeta(in, "gguf.general."+k, v)
	}
	for _, t := range f.Templates {
		sum := chattemplate.Report(env, in, t.At, t.Key, t.Text)
		env.SetMeta(in, "gguf."+strings.TrimPrefix(t.Key, "tokenizer.")+".sha256", sum)
	}
	if len(f.Tensors) > 0 && f.allValid() {
		if end := f.DataEnd(); end < in.Size {
			n := in.Size - end
			env.Report(finding.Finding{Rule: RuleTrailingData, Severity: finding.Medium, Location: in.At(end),
				Message:  fmt.Sprintf("%d bytes after the last tensor, where no loader reads; they are scanned as a member", n),
				Evidence: map[string]string{"trailing_bytes": strconv.FormatInt(n, 10)}})
			return env.Member(ctx, in, TrailingMember, io.NewSectionReader(in.R, end, n), n, 0)
		}
	}
	return nil
}

// dtypes returns the sorted names of the ggml types the tensors use
// (the model's precision and quantisation, for the BOM).
func (f *File) dtypes() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range f.Tensors {
		if int(t.Type) < len(ggmlTypes) && ggmlTypes[t.Type].name != "" && !seen[ggmlTypes[t.Type].name] {
			seen[ggmlTypes[t.Type].name] = true
			out = append(out, ggmlTypes[t.Type].name)
		}
	}
	slices.Sort(out)
	return out
}
