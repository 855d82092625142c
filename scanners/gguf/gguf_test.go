package gguf

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/chattemplate"
	"github.com/modelseal/modelseal/scanners/pickle"
)

// kv is a metadata pair; val is a string, a uint32, a uint64, []string, or
// raw bytes written after the type.
type kv struct {
	key string
	typ uint32
	val any
}

// ti is a tensor info.
type ti struct {
	name string
	dims []uint64
	typ  uint32
	off  uint64
}

// spec describes a GGUF file to build.
type spec struct {
	version uint32 // default 3
	kvs     []kv
	tensors []ti
	align   uint64 // padding used by the writer (default 32)
	data    int    // data section length; -1 for just enough
	extra   []byte // appended after the data section
}

type w struct {
	bytes.Buffer
	wide bool
}

func (b *w) u32(v uint32) { b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (b *w) u64(v uint64) { b.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (b *w) n(v uint64) {
	if b.wide {
		b.u64(v)
	} else {
		b.u32(uint32(v))
	}
}
func (b *w) str(s string) { b.n(uint64(len(s))); b.WriteString(s) }

func build(s spec) []byte {
	if s.version == 0 {
		s.version = 3
	}
	if s.align == 0 {
		s.align = 32
	}
	b := &w{wide: s.version >= 2}
	b.WriteString("GGUF")
	b.u32(s.version)
	b.n(uint64(len(s.tensors)))
	b.n(uint64(len(s.kvs)))
	for _, p := range s.kvs {
		b.str(p.key)
		b.u32(p.typ)
		switch v := p.val.(type) {
		case string:
			b.str(v)
		case uint32:
			b.u32(v)
		case uint64:
			b.u64(v)
		case []string:
			b.u32(typeString)
			b.n(uint64(len(v)))
			for _, e := range v {
				b.str(e)
			}
		case []byte:
			b.Write(v)
		}
	}
	end := uint64(0)
	for _, t := range s.tensors {
		b.str(t.name)
		b.u32(uint32(len(t.dims)))
		elems := uint64(1)
		for _, d := range t.dims {
			b.n(d)
			elems *= d
		}
		b.u32(t.typ)
		b.u64(t.off)
		if int(t.typ) < len(ggmlTypes) && ggmlTypes[t.typ].block > 0 {
			end = max(end, t.off+alignUp(elems/ggmlTypes[t.typ].block*ggmlTypes[t.typ].size, s.align))
		}
	}
	if len(s.tensors) > 0 {
		for uint64(b.Len())%s.align != 0 {
			b.WriteByte(0)
		}
	}
	n := int(end)
	if s.data != 0 {
		n = max(s.data, 0)
	}
	b.Write(make([]byte, n))
	b.Write(s.extra)
	return b.Bytes()
}

func run(t testing.TB, data []byte) scan.File {
	t.Helper()
	return scan.ScanBytes(context.Background(), "m.gguf", data, scan.Options{Policy: testPolicy(), Scanners: []scan.Scanner{Scanner{}, pickle.Scanner{}}})
}

const chatml = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

const llama3 = `{%- set ns = namespace(found=false) %}{%- for message in messages %}{%- if message['role'] == 'system' %}{%- set ns.found = true %}{%- endif %}{%- endfor %}{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}`

const cve202434359 = `{% for x in ().__class__.__base__.__subclasses__() %}{% if "warning" in x.__name__ %}{{x()._module.__builtins__['__import__']('os').popen("echo modelseal-harmless")}}{%endif%}{% endfor %}`

func baseKVs(tpl string) []kv {
	return []kv{
		{"general.architecture", typeString, "llama"},
		{"general.name", typeString, "tiny"},
		{"general.alignment", typeUint32, uint32(32)},
		{"general.file_type", typeUint32, uint32(7)},
		{"tokenizer.ggml.tokens", typeArray, []string{"<s>", "</s>", "hi"}},
		{"tokenizer.chat_template", typeString, tpl},
	}
}

var twoTensors = []ti{{"tok_embd.weight", []uint64{4, 2}, 0, 0}, {"blk.0.attn_q.weight", []uint64{32}, 8, 32}}

func TestScan(t *testing.T) {
	evil := []byte("cos\nsystem\n(S'echo modelseal-harmless'\ntR.")
	nested := func(depth int) []byte { // an array of arrays ... of uint8
		b := &w{wide: true}
		for i := 0; i < depth; i++ {
			b.u32(typeArray)
			b.n(1)
		}
		b.u32(typeUint8)
		b.n(1)
		b.WriteByte(1)
		return b.Bytes()
	}
	tests := []struct {
		name    string
		data    []byte
		rules   []string
		maxSev  finding.Severity
		errText string
	}{
		{name: "valid", data: build(spec{kvs: baseKVs(chatml), tensors: twoTensors})},
		{name: "valid llama3 template with namespace", maxSev: finding.Info, rules: []string{chattemplate.Rule},
			data: build(spec{kvs: baseKVs(llama3), tensors: twoTensors})},
		{name: "version 1 with 32-bit counts", data: build(spec{version: 1, kvs: baseKVs(chatml), tensors: twoTensors})},
		{name: "vocab only", data: build(spec{kvs: baseKVs(chatml)})},
		{name: "nested arrays within the limit", data: build(spec{kvs: []kv{{"x.nested", typeArray, nested(MaxNesting - 1)}}})},
		{name: "64-byte alignment", data: build(spec{align: 64, kvs: []kv{{"general.alignment", typeUint32, uint32(64)}},
			tensors: []ti{{"a", []uint64{8}, 0, 0}, {"b", []uint64{8}, 0, 64}}})},
		{name: "CVE-2024-34359 chat template", maxSev: finding.Critical, rules: []string{chattemplate.Rule},
			data: build(spec{kvs: baseKVs(cve202434359), tensors: twoTensors})},
		{name: "hostile named template", maxSev: finding.Critical, rules: []string{chattemplate.Rule},
			data: build(spec{kvs: append(baseKVs(chatml), kv{"tokenizer.chat_template.tool_use", typeString, "{{ lipsum.__globals__['os'].popen('id').read() }}"})})},
		{name: "template of the wrong type", maxSev: finding.Low, rules: []string{RuleInvalidMetadata},
			data: build(spec{kvs: []kv{{"tokenizer.chat_template", typeUint32, uint32(1)}}})},
		{name: "duplicate key", maxSev: finding.Medium, rules: []string{RuleDuplicateKey},
			data: build(spec{kvs: append(baseKVs(chatml), kv{"general.name", typeString, "other"})})},
		{name: "duplicate tensor", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{8}, 0, 0}, {"a", []uint64{8}, 0, 32}}})},
		{name: "overlapping tensors", maxSev: finding.Medium, rules: []string{RuleInvalidTensor, RuleTensorLayout},
			data: build(spec{tensors: []ti{{"a", []uint64{16}, 0, 0}, {"b", []uint64{16}, 0, 32}}})},
		{name: "misaligned tensor", maxSev: finding.Medium, rules: []string{RuleInvalidTensor, RuleTensorLayout},
			data: build(spec{tensors: []ti{{"a", []uint64{1}, 0, 0}, {"b", []uint64{1}, 0, 4}}, data: 32})},
		{name: "tensor past the end", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{1024}, 0, 0}}, data: 64})},
		{name: "offset overflow", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{8}, 0, math.MaxUint64 - 31}}, data: 64})},
		{name: "unknown ggml type", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{8}, 4, 0}}, data: 32})},
		{name: "block size mismatch", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{33}, 8, 0}}, data: 64})},
		{name: "dimension overflow", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{"a", []uint64{1 << 40, 1 << 40}, 0, 0}}, data: 32})},
		{name: "long tensor name", maxSev: finding.Medium, rules: []string{RuleInvalidTensor},
			data: build(spec{tensors: []ti{{strings.Repeat("n", 64), []uint64{8}, 0, 0}}})},
		{name: "gap between tensors", maxSev: finding.Low, rules: []string{RuleTensorLayout},
			data: build(spec{tensors: []ti{{"a", []uint64{8}, 0, 0}, {"b", []uint64{8}, 0, 64}}})},
		{name: "alignment not a power of two", maxSev: finding.Medium, rules: []string{RuleInvalidMetadata},
			data: build(spec{kvs: []kv{{"general.alignment", typeUint32, uint32(24)}}, tensors: []ti{{"a", []uint64{8}, 0, 0}}})},
		{name: "alignment of the wrong type", maxSev: finding.Medium, rules: []string{RuleInvalidMetadata},
			data: build(spec{kvs: []kv{{"general.alignment", typeUint64, uint64(32)}}, tensors: []ti{{"a", []uint64{8}, 0, 0}}})},
		{name: "trailing zeros", maxSev: finding.Medium, rules: []string{RuleTrailingData},
			data: build(spec{tensors: twoTensors, extra: make([]byte, 100)})},
		{name: "trailing pickle payload", maxSev: finding.Critical,
			data: build(spec{tensors: twoTensors, extra: evil})},
		{name: "unsupported version", errText: "unsupported version (big-endian or future GGUF?) '50331648' at byte 4",
			data: append([]byte("GGUF\x00\x00\x00\x03"), make([]byte, 16)...)},
		{name: "kv count beyond the file", errText: "metadata count exceeds",
			data: append([]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)},
		{name: "tensor count beyond the file", errText: "tensor count exceeds",
			data: append([]byte("GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00"), make([]byte, 8)...)},
		{name: "string length beyond the file", errText: "length runs past the end",
			data: build(spec{kvs: []kv{{"k", typeString, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}}}})},
		{name: "array length beyond the file", errText: "claims more elements",
			data: build(spec{kvs: []kv{{"k", typeArray, []byte{typeUint64, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0}}}})},
		{name: "arrays nested too deep", errText: "nest deeper than 4",
			data: build(spec{kvs: []kv{{"k", typeArray, nested(MaxNesting + 1)}}})},
		{name: "unknown value type", errText: "unknown value type '13'",
			data: build(spec{kvs: []kv{{"k", 13, []byte{0}}}})},
		{name: "too many dimensions", errText: "more than 4 dimensions",
			data: build(spec{tensors: []ti{{"a", []uint64{1, 1, 1, 1, 1}, 0, 0}}})},
		{name: "truncated", errText: "metadata key length runs past the end of the file (7 bytes left) '17' at byte 105",
			data: build(spec{kvs: baseKVs(chatml), tensors: twoTensors})[:120]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, tt.data)
			var got []string
			sev := finding.Info
			for _, x := range f.Findings {
				if !slices.Contains(got, x.Rule) {
					got = append(got, x.Rule)
				}
				sev = max(sev, x.Severity)
			}
			slices.Sort(got)
			if tt.maxSev != finding.Critical && !slices.Equal(got, tt.rules) {
				t.Errorf("rules %v, want %v; findings %v", got, tt.rules, f.Findings)
			}
			if sev != tt.maxSev {
				t.Errorf("max severity %v, want %v; findings %v", sev, tt.maxSev, f.Findings)
			}
			if tt.errText == "" && len(f.Errors) > 0 {
				t.Errorf("errors %v", f.Errors)
			}
			if tt.errText != "" && (len(f.Errors) != 1 || !strings.Contains(f.Errors[0].Message, tt.errText)) {
				t.Errorf("errors %v, want one with %q", f.Errors, tt.errText)
			}
			if len(f.Unscanned) > 0 && tt.maxSev != finding.Medium {
				t.Errorf("unscanned %v", f.Unscanned)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	f := run(t, build(spec{kvs: baseKVs(chatml), tensors: twoTensors}))
	m := f.Metadata
	if m["gguf.version"] != uint32(3) || m["gguf.tensors"] != 2 || m["gguf.parameters"] != uint64(40) ||
		m["gguf.general.architecture"] != "llama" || m["gguf.general.name"] != "tiny" || m["gguf.general.alignment"] != uint64(32) ||
		m["gguf.chat_template.sha256"] != chattemplate.Sum(chatml) {
		t.Fatalf("metadata %v", m)
	}
	if !slices.Equal(f.Formats, []string{"gguf"}) || len(f.Findings) != 0 {
		t.Fatalf("formats %v findings %v", f.Formats, f.Findings)
	}
	if dts, _ := m["gguf.dtypes"].([]string); !slices.Equal(dts, []string{"F32", "Q8_0"}) {
		t.Fatalf("dtypes %v", m["gguf.dtypes"])
	}
}

func TestTemplateFindingEvidence(t *testing.T) {
	data := build(spec{kvs: baseKVs(cve202434359), tensors: twoTensors})
	f := run(t, data)
	at := int64(bytes.Index(data, []byte(cve202434359)))
	var ok bool
	for _, x := range f.Findings {
		if x.Evidence["sha256"] != chattemplate.Sum(cve202434359) || x.Evidence["template"] != "tokenizer.chat_template" {
			t.Errorf("evidence %v", x.Evidence)
		}
		if x.Evidence["pattern"] == "__class__" && x.Location.Offset == at+int64(strings.Index(cve202434359, "__class__")) {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no __class__ finding at its file offset: %v", f.Findings)
	}
}

func TestParseErrorsAreFormatErrors(t *testing.T) {
	_, err := Parse(context.Background(), bytes.NewReader([]byte("GGUF\x03\x00\x00")), 7)
	var fe *scan.FormatError
	if !errors.As(err, &fe) || fe.Off != 4 {
		t.Fatalf("err %v", err)
	}
	if _, err := Parse(context.Background(), bytes.NewReader([]byte("GGML....")), 8); !errors.Is(err, scan.ErrNotFormat) {
		t.Fatalf("err %v", err)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tokens := make([]string, 100000)
	_, err := Parse(ctx, bytes.NewReader(build(spec{kvs: []kv{{"t", typeArray, tokens}}})), int64(len(build(spec{kvs: []kv{{"t", typeArray, tokens}}}))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build(spec{kvs: baseKVs(chatml), tensors: twoTensors}))
	f.Add(build(spec{version: 1, kvs: baseKVs(llama3), tensors: twoTensors}))
	f.Add(build(spec{tensors: []ti{{"a", []uint64{16}, 0, 0}, {"b", []uint64{16}, 0, 32}}}))
	f.Add(build(spec{kvs: []kv{{"k", typeArray, []byte{typeArray, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, typeUint8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *scan.FormatError
			if !errors.As(err, &fe) && !errors.Is(err, scan.ErrNotFormat) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		if len(file.Problems) > maxProblems || file.DataEnd() < file.DataStart {
			t.Fatalf("problems %d, data %d..%d", len(file.Problems), file.DataStart, file.DataEnd())
		}
		_ = run(t, data)
	})
}

// testPolicy is the default policy, parsed once for all tests.
var testPolicy = sync.OnceValue(policy.Default)
