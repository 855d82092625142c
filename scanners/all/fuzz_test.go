package all

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// FuzzDispatch feeds arbitrary bytes to content sniffing and every scanner
// behind it: no input may panic, hang or escape the budgets.
func FuzzDispatch(f *testing.F) {
	for _, dir := range []string{"../../fixtures/benign", "../../fixtures/malicious", "../../testdata/picklescan/files/data"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		var file scan.File
		env := scan.NewEnv(pol, scan.Limits{MaxExpanded: 64 << 20}, Scanners(), &file)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "fuzz", Offset: -1}}
		if err := env.Dispatch(ctx, in); err != nil {
			t.Fatalf("dispatch: %v", err)
		}
	})
}
