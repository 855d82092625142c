package oms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
)

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func statement(t testing.TB, ser string, resources [][3]string, root string) []byte {
	t.Helper()
	var rs []string
	h := sha256.New()
	for _, r := range resources {
		rs = append(rs, `{"name":"`+r[0]+`","algorithm":"`+r[1]+`","digest":"`+r[2]+`"}`)
		d, _ := hex.DecodeString(r[2])
		h.Write(d)
	}
	if root == "" {
		root = hex.EncodeToString(h.Sum(nil))
	}
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"m","digest":{"sha256":"` + root + `"}}],` +
		`"predicateType":"https://model_signing/signature/v1.0","predicate":{"serialization":` + ser + `,"resources":[` + strings.Join(rs, ",") + `]}}`)
}

// TestParseStatementShapes decodes every shape model_signing has written.
func TestParseStatementShapes(t *testing.T) {
	a, b := hexSum("a"), hexSum("b")
	tests := []struct {
		name      string
		payload   []byte
		wantErr   string
		shardSize int64
		n         int
	}{
		{"files", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false}`, [][3]string{{"x", "sha256", a}, {"y", "sha256", b}}, ""), "", 0, 2},
		{"files, ignore_paths", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false,"ignore_paths":["model.sig",".git"]}`, [][3]string{{"x", "sha256", a}}, ""), "", 0, 1},
		{"unsorted resources", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false}`, [][3]string{{"y", "sha256", b}, {"x", "sha256", a}}, ""), "", 0, 2},
		{"shards, float shard_size", statement(t, `{"method":"shards","hash_type":"sha256","allow_symlinks":false,"shard_size":1000000000.0}`, [][3]string{{"x:0:1", "sha256-sharded-1000000000", a}}, ""), "", 1000000000, 1},
		{"shards, int shard_size, sharded hash_type", statement(t, `{"method":"shards","hash_type":"sha256-sharded-1024","allow_symlinks":false,"shard_size":1024}`, [][3]string{{"a:b:0:1024", "sha256-sharded-1024", a}}, ""), "", 1024, 1},
		{"allow_symlinks as string", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":"false"}`, [][3]string{{"x", "sha256", a}}, ""), "", 0, 1},
		{"root digest mismatch", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false}`, [][3]string{{"x", "sha256", a}}, b), "inconsistent", 0, 0},
		{"fractional shard_size", statement(t, `{"method":"shards","hash_type":"sha256","allow_symlinks":false,"shard_size":10.5}`, [][3]string{{"x:0:1", "sha256-sharded-10", a}}, ""), "shard_size", 0, 0},
		{"bad shard name", statement(t, `{"method":"shards","hash_type":"sha256","allow_symlinks":false,"shard_size":10}`, [][3]string{{"x", "sha256-sharded-10", a}}, ""), "shard name", 0, 0},
		{"duplicate", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false}`, [][3]string{{"x", "sha256", a}, {"x", "sha256", a}}, ""), "twice", 0, 0},
		{"short digest", statement(t, `{"method":"files","hash_type":"sha256","allow_symlinks":false}`, [][3]string{{"x", "sha256", "abcd"}}, ""), "digest", 0, 0},
		{"unknown method", statement(t, `{"method":"tensors","hash_type":"sha256","allow_symlinks":false}`, nil, ""), "method", 0, 0},
		{"unknown hash", statement(t, `{"method":"files","hash_type":"md5","allow_symlinks":false}`, nil, ""), "md5", 0, 0},
		{"not json", []byte("{"), "malformed", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseStatement(tt.payload)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Resources) != tt.n || m.Serialization.ShardSize != tt.shardSize {
				t.Errorf("%d resources, shard size %d", len(m.Resources), m.Serialization.ShardSize)
			}
		})
	}
}

// TestParseVectorsPayloads decodes the payloads of every vector.
func TestParseVectorsPayloads(t *testing.T) {
	sigs, _ := filepath.Glob("../../testdata/model-signing/v*/model.sig")
	if len(sigs) != 13 {
		t.Fatalf("%d vector signatures, want 13", len(sigs))
	}
	for _, p := range sigs {
		var b struct {
			DsseEnvelope struct {
				Payload []byte `json:"payload"`
			} `json:"dsseEnvelope"`
		}
		data, _ := os.ReadFile(p)
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		m, err := ParseStatement(b.DsseEnvelope.Payload)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if strings.Contains(p, "v0.2.0") != m.Legacy {
			t.Errorf("%s: legacy %v", p, m.Legacy)
		}
	}
}

// TestStatementRoundTrip encodes a manifest and decodes it back.
func TestStatementRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]string{"a-c": "1", "a/b": "2", "big": strings.Repeat("z", 2500), "empty": ""} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(c), 0o644)
	}
	for _, shard := range []int64{0, 1000} {
		for _, alg := range []digest.Algorithm{digest.SHA256, digest.BLAKE2b, digest.BLAKE3} {
			h, err := HashModel(context.Background(), dir, HashOptions{Digest: digest.Options{Algorithm: alg, ShardSize: shard}})
			if err != nil {
				t.Fatal(err)
			}
			st, err := h.Manifest.Statement()
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseStatement(st)
			if err != nil {
				t.Fatalf("%s/%d: %v\n%s", alg, shard, err, st)
			}
			if !bytes.Equal(m.RootDigest(), h.Manifest.RootDigest()) || m.ModelName != filepath.Base(dir) {
				t.Errorf("%s/%d: round trip differs", alg, shard)
			}
			var names []string
			for _, r := range m.Resources {
				names = append(names, r.Name)
			}
			want := "[a/b a-c big empty]"
			if shard > 0 {
				// empty files have no shard; 2500 bytes make 3 shards.
				want = "[a/b:0:1 a-c:0:1 big:0:1000 big:1000:2000 big:2000:2500]"
			}
			if got := strings.Join(strings.Fields(strings.Trim(strings.Join(names, " "), "[]")), " "); "["+got+"]" != want {
				t.Errorf("%s/%d: resources %s, want %s (model_signing's order)", alg, shard, got, want)
			}
			d, err := Compare(m, h.Manifest, CompareOptions{})
			if err != nil || !d.Empty() {
				t.Errorf("compare with itself: %v %v", d, err)
			}
		}
	}
}

// FuzzParseStatement must never panic, and what it accepts re-encodes.
func FuzzParseStatement(f *testing.F) {
	sigs, _ := filepath.Glob("../../testdata/model-signing/v*/model.sig")
	for _, p := range sigs {
		var b struct {
			DsseEnvelope struct {
				Payload string `json:"payload"`
			} `json:"dsseEnvelope"`
		}
		data, _ := os.ReadFile(p)
		if json.Unmarshal(data, &b) == nil {
			if pl, err := base64.StdEncoding.DecodeString(b.DsseEnvelope.Payload); err == nil {
				f.Add(pl)
			}
		}
	}
	f.Add(statement(f, `{"method":"shards","hash_type":"sha256","allow_symlinks":false,"shard_size":1e9}`, [][3]string{{"x:0:1", "sha256-sharded-1000000000", hexSum("x")}}, ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseStatement(data)
		if err != nil || m.Legacy {
			return
		}
		st, err := m.Statement()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseStatement(st)
		if err != nil {
			t.Fatalf("re-encoded statement does not decode: %v", err)
		}
		if !bytes.Equal(m.RootDigest(), m2.RootDigest()) {
			t.Fatal("root digest changed")
		}
	})
}

// FuzzParseShardName checks the last-two-colons rule.
func FuzzParseShardName(f *testing.F) {
	f.Add("a:b:0:10")
	f.Add("x:1:2")
	f.Add("::")
	f.Fuzz(func(t *testing.T, s string) {
		file, start, end, err := ParseShardName(s)
		if err != nil {
			return
		}
		if start < 0 || end < start || file == "" {
			t.Fatalf("accepted %q as %q %d %d", s, file, start, end)
		}
		if ShardName(file, start, end) != s && !strings.ContainsAny(s, "+0") {
			t.Fatalf("%q does not round trip", s)
		}
	})
}

func TestCompareNames(t *testing.T) {
	if modelfs.Compare("a/b", "a-c") >= 0 || modelfs.Compare("a-c", "a/b") <= 0 || modelfs.Compare("a", "a/b") >= 0 {
		t.Error("component order")
	}
}
