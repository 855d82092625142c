package digest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

func TestKnownDigests(t *testing.T) {
	tests := []struct {
		alg  Algorithm
		want string
	}{
		{SHA256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{BLAKE2b, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"},
		{BLAKE3, "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"},
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("abc"), 0o644)
	set, err := modelfs.Open(dir, modelfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		res, err := Compute(context.Background(), set, Options{Algorithm: tt.alg})
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Items[0].Hex(); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.alg, got, tt.want)
		}
		if len(res.Items[0].Sum) != tt.alg.Size() {
			t.Errorf("%s: size %d", tt.alg, len(res.Items[0].Sum))
		}
	}
}

// TestParallelMatchesSequential hashes files and shards with several
// workers and small buffers and checks every digest against crypto/sha256
// over the bytes.
func TestParallelMatchesSequential(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	contents := map[string][]byte{}
	for i, size := range []int{0, 1, 4095, 4096, 4097, 100_000, 300_001} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		name := filepath.Join(dir, "d", string(rune('a'+i)))
		os.MkdirAll(filepath.Dir(name), 0o755)
		os.WriteFile(name, b, 0o644)
		contents["d/"+string(rune('a'+i))] = b
	}
	set, err := modelfs.Open(dir, modelfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, shard := range []int64{0, 4096, 65536} {
		for _, workers := range []int{1, 3} {
			var calls int
			res, err := Compute(context.Background(), set, Options{ShardSize: shard, Workers: workers, BufferSize: 1000,
				Progress: func(done, total int, _ int64) { calls++ }})
			if err != nil {
				t.Fatal(err)
			}
			if calls != len(res.Items) {
				t.Errorf("%d progress calls for %d items", calls, len(res.Items))
			}
			for _, it := range res.Items {
				want := sha256.Sum256(contents[it.File][it.Start:it.End])
				if !bytes.Equal(it.Sum, want[:]) {
					t.Fatalf("shard %d workers %d: %s [%d,%d) wrong", shard, workers, it.File, it.Start, it.End)
				}
			}
			wantItems := 0
			for _, c := range contents {
				switch {
				case shard == 0:
					wantItems++
				default:
					wantItems += (len(c) + int(shard) - 1) / int(shard)
				}
			}
			if len(res.Items) != wantItems {
				t.Errorf("shard %d: %d items, want %d", shard, len(res.Items), wantItems)
			}
			if shard == 0 {
				if d, ok := res.File("d/g"); !ok || hex.EncodeToString(d) == "" {
					t.Error("File lookup")
				}
			}
		}
	}
}

func TestFileChangedWhileHashing(t *testing.T) {
	for _, change := range []string{"grew", "shrank"} {
		dir := t.TempDir()
		p := filepath.Join(dir, "w.bin")
		os.WriteFile(p, bytes.Repeat([]byte("x"), 10000), 0o644)
		set, err := modelfs.Open(dir, modelfs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if change == "grew" {
			f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		} else {
			os.Truncate(p, 5000)
		}
		_, err = Compute(context.Background(), set, Options{})
		if !errors.Is(err, ErrChanged) {
			t.Errorf("%s: %v, want ErrChanged", change, err)
		}
	}
}

func TestCancel(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1<<20), 0o644)
	set, _ := modelfs.Open(dir, modelfs.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compute(ctx, set, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("%v, want context.Canceled", err)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"sha256": SHA256, "blake2": BLAKE2b, "blake2b": BLAKE2b, "blake3": BLAKE3} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := ParseAlgorithm("md5"); err == nil {
		t.Error("md5 accepted")
	}
}
