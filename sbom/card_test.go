package sbom

import (
	"archive/zip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// TestParseReadme covers front matter shapes: lists or scalars, none, an
// unclosed block, CRLF, a byte order mark, bad YAML.
func TestParseReadme(t *testing.T) {
	cases := []struct {
		name    string
		md      string
		wantErr string
		check   func(c Card) bool
	}{
		{"scalars", "---\nlicense: mit\ndatasets: squad\nbase_model: org/base\nlanguage: en\n---\nbody", "",
			func(c Card) bool {
				return slices.Equal(c.Licenses, []string{"mit"}) && slices.Equal(c.Datasets, []string{"squad"}) &&
					slices.Equal(c.BaseModels, []string{"org/base"}) && slices.Equal(c.Languages, []string{"en"})
			}},
		{"lists and model-index", "---\nmetrics: [bleu, rouge]\nmodel-index:\n- name: m\n  results:\n  - dataset: {name: wmt, split: test}\n    metrics:\n    - {type: bleu, value: 30.1}\n---\n", "",
			func(c Card) bool {
				return slices.Equal(c.Metrics, []string{"bleu", "rouge"}) && len(c.Results) == 1 &&
					c.Results[0] == MetricResult{Type: "bleu", Value: "30.1", Dataset: "wmt", Split: "test"}
			}},
		{"no front matter", "# Model\n---\nlicense: mit\n---\n", "", func(c Card) bool { return len(c.Licenses) == 0 }},
		{"CRLF and BOM", "\ufeff---\r\npipeline_tag: fill-mask\r\n---\r\n", "", func(c Card) bool { return c.Task == "fill-mask" }},
		{"dots close", "---\nlibrary_name: gguf\n...\n", "", func(c Card) bool { return c.Library == "gguf" }},
		{"unclosed", "---\nlicense: mit\n", "no closing", nil},
		{"bad yaml", "---\nlicense: [mit\n---\n", "front matter", nil},
		{"not a mapping", "---\n- a\n- b\n---\n", "front matter", nil},
		{"wrong types ignored", "---\nlicense: {a: b}\ndatasets: [1, {x: y}, ok]\npipeline_tag: [x]\n---\n", "",
			func(c Card) bool {
				return len(c.Licenses) == 0 && slices.Equal(c.Datasets, []string{"1", "ok"}) && c.Task == ""
			}},
		{"too large", "---\nx: " + strings.Repeat("a", MaxFrontMatterSize) + "\n---\n", "limit", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			card, err := ParseReadme([]byte(c.md))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(card) {
				t.Errorf("card %+v", card)
			}
		})
	}
}

// TestParseConfig covers config.json's fields and bad input.
func TestParseConfig(t *testing.T) {
	cases := []struct {
		json    string
		arch    []string
		typ, dt string
		err     bool
	}{
		{`{"architectures":["BertModel"],"model_type":"bert","torch_dtype":"float16"}`, []string{"BertModel"}, "bert", "float16", false},
		{`{"model_type":"gemma3","dtype":"bfloat16"}`, nil, "gemma3", "bfloat16", false},
		{`{"model_type":"llava","text_config":{"torch_dtype":"float16"}}`, nil, "llava", "float16", false},
		{`{"architectures":"X","model_type":7}`, []string{"X"}, "7", "", false},
		{`[1,2]`, nil, "", "", true},
		{`{"a":`, nil, "", "", true},
	}
	for _, c := range cases {
		card, err := ParseConfig([]byte(c.json))
		if (err != nil) != c.err {
			t.Errorf("%s: error %v", c.json, err)
			continue
		}
		if !slices.Equal(card.Architectures, c.arch) || card.ModelType != c.typ || card.DType != c.dt {
			t.Errorf("%s: %+v", c.json, card)
		}
	}
}

// TestReadCardErrorsNameTheFile checks bad and oversized metadata files are
// reported by name and do not stop the others.
func TestReadCardErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "README.md", "---\nlicense: mit\n---\n")
	write(t, dir, "config.json", "{not json")
	big, err := os.Create(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(MaxTokenizerConfigSize + 1); err != nil {
		t.Fatal(err)
	}
	big.Close()
	set, err := modelfs.Open(dir, modelfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	card, errs := ReadCard(set)
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), "config.json: ") || !strings.HasPrefix(errs[1].Error(), "tokenizer_config.json: ") ||
		!strings.Contains(errs[1].Error(), "limit") {
		t.Errorf("errors %v", errs)
	}
	if !slices.Equal(card.Licenses, []string{"mit"}) {
		t.Errorf("README not read: %+v", card)
	}
}

// torchDataPkl returns the data.pkl of the benign checkpoint fixture.
func torchDataPkl(t testing.TB, path string) []byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			rc, _ := f.Open()
			data, _ := io.ReadAll(rc)
			rc.Close()
			return data
		}
	}
	t.Fatal("no data.pkl")
	return nil
}

// TestPickleTensorStats counts tensors of real torch.save pickles and
// refuses globals off the allowlist and lengths past the end.
func TestPickleTensorStats(t *testing.T) {
	u64 := func(n uint64) []byte { b := make([]byte, 8); binary.LittleEndian.PutUint64(b, n); return b }
	osSystem, err := os.ReadFile("../fixtures/malicious/reduce_os_system_harmless.pkl")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		data    []byte
		tensors int
		params  int64
		dtypes  []string
		wantErr string
	}{
		{"state dict", torchDataPkl(t, torchFixture), 9, 36, []string{"float32", "int64"}, ""},
		{"parameters", torchDataPkl(t, "../fixtures/benign/torch_zip_parameters.pt"), 2, 6, []string{"float32"}, ""},
		{"dtypes", torchDataPkl(t, "../fixtures/benign/torch_zip_dtypes.pt"), 10, 0, nil, ""},
		{"os.system", osSystem, 0, 0, nil, "not on the metadata allowlist"},
		{"BINBYTES8 past the end", append(append([]byte{0x80, 4, 0x8e}, u64(1<<40)...), '.'), 0, 0, nil, "past the end"},
		{"FRAME past the end", append(append([]byte{0x80, 4, 0x95}, u64(1<<50)...), '.'), 0, 0, nil, "past the end"},
		{"no STOP", []byte{0x80, 2, 'N'}, 0, 0, nil, "no STOP"},
		{"unknown opcode", []byte{0x80, 2, 0xff, '.'}, 0, 0, nil, "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := PickleTensorStats(c.data)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Tensors != c.tensors || (c.params != 0 && st.Parameters != c.params) || (c.dtypes != nil && !slices.Equal(st.DTypes, c.dtypes)) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func FuzzParseReadme(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join(hfFixture, "README.md"))
	f.Add(seed)
	f.Add([]byte("---\nlicense: [a, b]\nmodel-index: [{results: [{metrics: [{type: x}]}]}]\n---\n"))
	f.Add([]byte("---\na: &x [*x]\n---\n"))
	f.Fuzz(func(t *testing.T, md []byte) {
		c, err := ParseReadme(md)
		if err != nil {
			return
		}
		for _, l := range [][]string{c.Licenses, c.Datasets, c.BaseModels, c.Languages, c.Metrics, c.Tags} {
			if len(l) > maxListItems {
				t.Fatalf("list of %d items", len(l))
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join(hfFixture, "config.json"))
	f.Add(seed)
	f.Add([]byte(`{"text_config":{"dtype":1},"architectures":[null,"A"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseConfig(data)
		var c Card
		_ = c.parseTokenizerConfig(data)
	})
}

func FuzzPickleTensorStats(f *testing.F) {
	for _, p := range []string{torchFixture, "../fixtures/benign/torch_zip_parameters.pt", "../fixtures/benign/torch_zip_dtypes.pt"} {
		f.Add(torchDataPkl(f, p))
	}
	f.Add([]byte{0x80, 2, ']', 'q', 0, 'h', 0, 'a', '.'})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := PickleTensorStats(data)
		if err == nil && (st.Tensors < 0 || st.Parameters < 0) {
			t.Fatalf("stats %+v", st)
		}
	})
}
