package digest

import (
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// TestMappedMatchesRead hashes a file large enough to be mapped, whole and
// in shards that start off page boundaries, and compares with crypto/sha256.
func TestMappedMatchesRead(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3*minMmap+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := modelfs.Open(dir, modelfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, shard := range []int64{0, minMmap + 4097} {
		res, err := Compute(context.Background(), set, Options{Algorithm: SHA256, ShardSize: shard})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range res.Items {
			want := sha256.Sum256(data[it.Start:it.End])
			if string(it.Sum) != string(want[:]) {
				t.Errorf("shard %d [%d,%d): digest differs from crypto/sha256", shard, it.Start, it.End)
			}
		}
	}
}

// TestMappedTruncated maps a range beyond a file that shrank: the SIGBUS is
// recovered and reported as ErrChanged, not a crash.
func TestMappedTruncated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mapped, err := hashMapped(context.Background(), f, "f", 0, 2*minMmap, sha256.New())
	if !mapped || !errors.Is(err, ErrChanged) {
		t.Fatalf("mapped=%v err=%v, want ErrChanged", mapped, err)
	}
}
