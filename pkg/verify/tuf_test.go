package verify

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRefreshedTrustedRoot(t *testing.T) {
	tr, from, err := RefreshedTrustedRoot(context.Background(), TrustedRootOptions{Offline: true})
	if err != nil || tr == nil || !strings.Contains(from, "embedded") || !strings.Contains(from, "offline") {
		t.Fatalf("offline: %v %q %v", tr, from, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 || len(tr.RekorLogs()) == 0 {
		t.Fatal("embedded root has no Fulcio CA or Rekor log")
	}
	// A TUF repository that cannot be reached (a closed loopback port):
	// the embedded root, with the reason; never an error or a hang.
	start := time.Now()
	tr, from, err = RefreshedTrustedRoot(context.Background(), TrustedRootOptions{
		CacheDir: t.TempDir(), Timeout: 5 * time.Second, Mirror: "http://127.0.0.1:1"})
	if err != nil || tr == nil {
		t.Fatalf("unreachable mirror: %v", err)
	}
	if !strings.Contains(from, "embedded") || !strings.Contains(from, "TUF refresh failed") {
		t.Fatalf("source %q", from)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("refresh took %v, past its timeout", d)
	}
	t.Log(from)
}
