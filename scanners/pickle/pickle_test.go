package pickle

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// asm assembles a pickle from opcodes and operands: strings are written as
// they are, so tests read like pickletools.dis output.
func asm(parts ...any) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b.WriteString(v)
		case byte:
			b.WriteByte(v)
		case int:
			b.WriteByte(byte(v))
		case rune:
			b.WriteByte(byte(v))
		case []byte:
			b.Write(v)
		}
	}
	return b.Bytes()
}

// su is a SHORT_BINUNICODE operand.
func su(s string) []byte { return append([]byte{opShortBinUnicode, byte(len(s))}, s...) }

// sb is a SHORT_BINBYTES operand.
func sb(b []byte) []byte { return append([]byte{opShortBinBytes, byte(len(b))}, b...) }

func u64(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

// run scans data as a file and returns the file result.
func run(t *testing.T, data []byte) scan.File {
	t.Helper()
	return scan.ScanBytes(context.Background(), "t.pkl", data, scan.Options{Policy: testPolicy, Scanners: []scan.Scanner{Scanner{}}})
}

func globals(f scan.File) []string {
	var out []string
	for _, x := range f.Findings {
		if x.Global != "" {
			out = append(out, x.Global)
		}
	}
	return out
}

// testPolicy is built once for every test of the package.
var testPolicy = policy.Default()

func TestAnalyze(t *testing.T) {
	evalCall := asm(su("builtins"), su("eval"), opStackGlobal, su("1"), opTuple1, opReduce, opStop)
	tests := []struct {
		name      string
		data      []byte
		globals   []string // exactly these, in order
		rules     []string // at least these
		maxSev    finding.Severity
		errors    int
		unscanned int
	}{
		{name: "benign list protocol 0", data: []byte("(lp0\nVa\np1\naVb\np2\na.")},
		{name: "benign state dict", maxSev: finding.Info,
			data: asm(0x80, 2, "ccollections\nOrderedDict\n", ")R", su("w"), "ctorch._utils\n_rebuild_tensor_v2\n", ")R", "s.")},
		{name: "GLOBAL os.system", globals: []string{"os.system"}, maxSev: finding.Critical,
			data: asm("cos\nsystem\n(S'echo modelseal-harmless'\ntR.")},
		{name: "posix alias", globals: []string{"os.system"}, maxSev: finding.Critical,
			data: asm("cposix\nsystem\n(S'x'\ntR.")},
		{name: "INST exec", globals: []string{"builtins.exec"}, maxSev: finding.Critical,
			data: asm("(S'print(1)'\ni__builtin__\nexec\n.")},
		{name: "STACK_GLOBAL eval", globals: []string{"builtins.eval"}, maxSev: finding.Critical, data: asm(0x80, 4, evalCall)},
		{name: "STACK_GLOBAL operands from memo",
			globals: []string{"os.system"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("torch"), opMemoize, opPop, su("os"), opMemoize, su("system"), opMemoize,
				opPop, opPop, opBinGet, 1, opBinGet, 2, opStackGlobal, su("x"), opTuple1, opReduce, opStop)},
		{name: "DUP before MEMOIZE", globals: []string{"os.system"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("os"), opDup, opMemoize, opPop, su("system"), opStackGlobal, opStop)},
		{name: "dotted name through pathlib", globals: []string{"os.system"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("pathlib"), su("os.system"), opStackGlobal, opStop)},
		{name: "dotted dunder walk", globals: []string{"builtins.eval"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("builtins"), su("print.__self__.eval"), opStackGlobal, opStop)},
		{name: "unresolved STACK_GLOBAL", rules: []string{"pickle/unresolved-global"}, maxSev: finding.Critical,
			data: asm(0x80, 4, "ccollections\nOrderedDict\n)R", su("system"), opStackGlobal, opStop)},
		{name: "unknown global is medium", globals: []string{"mylib.Model"}, maxSev: finding.Medium,
			data: asm("cmylib\nModel\n)R.")},
		{name: "nested pickle via codecs.encode",
			globals: []string{"pickle.loads", "os.system"}, rules: []string{"pickle/nested-pickle"}, maxSev: finding.Critical,
			data: asm("c_pickle\nloads\n(c_codecs\nencode\n(Vcos\\u000asystem\\u000a(S'x'\\u000atR.\nS'latin1'\ntRtR.")},
		{name: "nested pickle via base64",
			globals: []string{"pickle.loads", "os.system"}, rules: []string{"pickle/nested-pickle"}, maxSev: finding.Critical,
			data: asm("cpickle\nloads\n(cbase64\nb64decode\n(S'" + base64.StdEncoding.EncodeToString([]byte("cos\nsystem\n(S'x'\ntR.")) + "'\ntRtR.")},
		{name: "nested pickle in bytes", globals: []string{"pickle.loads", "builtins.eval"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("pickle"), su("loads"), opStackGlobal, sb(asm(0x80, 4, evalCall)), opTuple1, opReduce, opStop)},
		{name: "module overwrite", rules: []string{"pickle/module-overwrite"}, maxSev: finding.Critical,
			data: asm(0x80, 4, su("torch._utils"), su("_rebuild_tensor"), opStackGlobal, opPop,
				"ctorch\n_utils\n", opNone, opEmptyDict, su("_rebuild_tensor"), su("builtins"), opSetItem, opTuple2, opBuild, opStop)},
		{name: "stacked pickles, payload second", globals: []string{"builtins.eval"}, maxSev: finding.Critical,
			data: asm(0x80, 4, opEmptyList, opStop, 0x80, 4, evalCall)},
		{name: "truncated after payload (nullifAI)", globals: []string{"builtins.eval"}, maxSev: finding.Critical,
			rules: []string{"pickle/truncated"}, errors: 1,
			data: asm(0x80, 4, su("builtins"), su("eval"), opStackGlobal, su("1"), opTuple1, opReduce, opBinUnicode, "\xff\xff\x00\x00abc")},
		{name: "trailing garbage", rules: []string{"pickle/trailing-data"}, maxSev: finding.Low,
			data: asm(0x80, 4, opEmptyList, opStop, "\n\n\t\t")},
		{name: "frame longer than the stream", rules: []string{"pickle/frame-mismatch"}, globals: []string{"builtins.eval"}, maxSev: finding.Critical,
			data: asm(0x80, 4, opFrame, u64(1000), evalCall)},
		{name: "opcode crosses frame end", rules: []string{"pickle/frame-mismatch"}, globals: []string{"builtins.eval"}, maxSev: finding.Critical,
			data: asm(0x80, 4, opFrame, u64(3), su("builtins"), su("eval"), opStackGlobal, opStop)},
		{name: "EXT1 is unresolved", rules: []string{"pickle/unresolved-global"}, maxSev: finding.High,
			data: asm(0x80, 2, opExt1, 1, opStop)},
		{name: "not a pickle: text", unscanned: 1, data: []byte("This is a README\n")},
		{name: "not a pickle: bad UTF-8 GLOBAL", unscanned: 1, data: []byte("cmod\n\xf8\n")},
		{name: "not a pickle: PNG", unscanned: 1, data: []byte("\x89PNG\r\n\x1a\n")},
		{name: "underflow below MARK fence is not a pickle", unscanned: 1, data: asm(opNone, opMark, opPop, opPop, opPop)},
		{name: "unsupported protocol", unscanned: 1, data: asm(0x80, 9, opNone, opStop)},
		{name: "memo miss after import is an error", globals: []string{"os.system"}, errors: 1, maxSev: finding.Critical,
			data: asm("cos\nsystem\n", opBinGet, 7, opStop)},
		{name: "huge BINBYTES8 length is bounded", unscanned: 1, data: asm(0x80, 4, opBinBytes8, u64(1<<62), opStop)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run(t, tt.data)
			got := globals(f)
			slices.Sort(got)
			want := slices.Clone(tt.globals)
			slices.Sort(want)
			if tt.globals != nil && !slices.Equal(got, want) {
				t.Errorf("globals = %v, want %v (findings %v)", got, tt.globals, f.Findings)
			}
			for _, r := range tt.rules {
				if !slices.Contains(f.Rules(), r) {
					t.Errorf("rule %s missing; findings %v", r, f.Findings)
				}
			}
			max := finding.Info
			for _, x := range f.Findings {
				max = maxSev(max, x.Severity)
			}
			if len(f.Findings) > 0 || tt.maxSev > finding.Info {
				if max != tt.maxSev {
					t.Errorf("max severity = %v, want %v; findings %v", max, tt.maxSev, f.Findings)
				}
			}
			if len(f.Errors) != tt.errors {
				t.Errorf("errors = %v, want %d", f.Errors, tt.errors)
			}
			if len(f.Unscanned) != tt.unscanned {
				t.Errorf("unscanned = %v, want %d", f.Unscanned, tt.unscanned)
			}
		})
	}
}

func maxSev(a, b finding.Severity) finding.Severity {
	if a > b {
		return a
	}
	return b
}

// TestJoblibArraySkipped builds joblib's layout by hand: a NumpyArrayWrapper
// BUILD with alignment, the padding byte and padding, then raw array bytes
// that would decode as a malicious pickle if they were read as opcodes.
func TestJoblibArraySkipped(t *testing.T) {
	payload := asm("cos\nsystem\n(S'x'\ntR.")
	raw := append(payload, make([]byte, 8*4-len(payload))...) // 4 float64 of "data"
	data := asm(0x80, 4,
		su("joblib.numpy_pickle"), su("NumpyArrayWrapper"), opStackGlobal,
		opEmptyTuple, opNewObj,
		opEmptyDict, opMark,
		su("subclass"), su("numpy"), su("ndarray"), opStackGlobal,
		su("shape"), opBinInt1, 4, opTuple1,
		su("order"), su("C"),
		su("dtype"), su("numpy"), su("dtype"), opStackGlobal, su("f8"), opNewFalse, opNewTrue, opTuple3, opReduce,
		opMark, opBinInt1, 3, su("<"), opNone, opNone, opNone, opBinInt1, 0xff, opBinInt1, 0xff, opBinInt1, 0, opTuple, opBuild,
		su("allow_mmap"), opNewTrue,
		su("numpy_array_alignment_bytes"), opBinInt1, 16,
		opSetItems, opBuild,
		3, "\xff\xff\xff", raw,
		opStop)
	f := run(t, data)
	if len(f.Findings) != 0 || len(f.Errors) != 0 {
		t.Fatalf("joblib array data was decoded as opcodes: findings %v errors %v", f.Findings, f.Errors)
	}
	var s scan.File
	env := scan.NewEnv(policy.Default(), scan.Limits{}, nil, &s)
	sum, err := Analyze(context.Background(), bytes.NewReader(data), scan.Input{Loc: finding.Location{Path: "j"}}, 0, env, Options{})
	if err != nil || !sum.Joblib || sum.Pickles != 1 || sum.Consumed != int64(len(data)) {
		t.Fatalf("summary %+v err %v", sum, err)
	}
}

func TestSummaryStoragesAndKeys(t *testing.T) {
	pid := asm(su("storage"), "ctorch\nFloatStorage\n", su("0"), su("cpu"), opBinInt1, 6, opTuple, opBinPersID)
	data := asm(0x80, 2, opMark, pid[:len(pid)-2], opTuple, opBinPersID, opStop, 0x80, 2, opMark, su("0"), opList, opStop)
	var f scan.File
	env := scan.NewEnv(policy.Default(), scan.Limits{}, nil, &f)
	sum, err := Analyze(context.Background(), bytes.NewReader(data), scan.Input{Loc: finding.Location{Path: "x"}}, 0, env, Options{MaxPickles: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := Storage{Type: "torch.FloatStorage", Key: "0", Location: "cpu", Numel: 6}
	if len(sum.Storages) != 1 || sum.Storages[0] != want || !slices.Equal(sum.Keys, []string{"0"}) {
		t.Fatalf("summary %+v", sum)
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var f scan.File
	env := scan.NewEnv(policy.Default(), scan.Limits{}, nil, &f)
	data := bytes.Repeat([]byte{opNone, opPop}, 100000)
	_, err := Analyze(ctx, bytes.NewReader(data), scan.Input{}, 0, env, Options{})
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNotPickle) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzAnalyze(f *testing.F) {
	f.Add([]byte("cos\nsystem\n(S'x'\ntR."))
	f.Add(asm(0x80, 4, opFrame, u64(20), su("builtins"), su("eval"), opStackGlobal, opMemoize, opStop))
	f.Add(asm(0x80, 2, "cjoblib.numpy_pickle\nNumpyArrayWrapper\n)R}b."))
	f.Add([]byte("(lp0\nVa\np1\naVb\np2\na."))
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		var file scan.File
		env := scan.NewEnv(pol, scan.Limits{}, []scan.Scanner{Scanner{}}, &file)
		in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "f", Offset: -1}}
		_ = env.Dispatch(context.Background(), in)
		for _, x := range file.Findings {
			if x.Rule == "" || !strings.Contains(x.Rule, "/") {
				t.Fatalf("finding without a rule: %+v", x)
			}
		}
	})
}
