package scan_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// nestFormat is a minimal container used to drive the engine: "NEST" then
// the rest of the stream is one member. It stands for zip, tar and the like.
type nestFormat struct{ stream bool }

func (nestFormat) Format() string { return "nest" }
func (nestFormat) Match(head []byte, size int64) bool {
	return bytes.HasPrefix(head, []byte("NEST"))
}
func (n nestFormat) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	r := bytesAt(in)
	if n.stream {
		return env.MemberStream(ctx, in, "inner", bytes.NewReader(r[4:]), 0)
	}
	return env.Member(ctx, in, "inner", bytes.NewReader(r[4:]), in.Size-4, 0)
}

func bytesAt(in scan.Input) []byte {
	b := make([]byte, in.Size)
	in.R.ReadAt(b, 0)
	return b
}

// evilFormat reports a critical finding for streams starting "EVIL".
type evilFormat struct{}

func (evilFormat) Format() string                     { return "evil" }
func (evilFormat) Match(head []byte, size int64) bool { return bytes.HasPrefix(head, []byte("EVIL")) }
func (evilFormat) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	env.Report(finding.Finding{Rule: "test/evil", Severity: finding.Critical, Location: in.At(0), Message: "evil"})
	return nil
}

func scanBytes(t *testing.T, data []byte, limits scan.Limits, stream bool) scan.File {
	t.Helper()
	var f scan.File
	env := scan.NewEnv(policy.Default(), limits, []scan.Scanner{nestFormat{stream}, evilFormat{}}, &f)
	in := scan.Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: finding.Location{Path: "x", Offset: -1}}
	if err := env.Dispatch(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestNestingAndBudgets(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		limits  scan.Limits
		stream  bool
		rule    string
		members []string
	}{
		{name: "finding inside two containers", data: []byte("NESTNESTEVIL"), rule: "test/evil", members: []string{"inner", "inner"}},
		{name: "streamed members", data: []byte("NESTNESTEVIL"), stream: true, rule: "test/evil", members: []string{"inner", "inner"}},
		{name: "depth limit", data: []byte("NESTNESTNESTEVIL"), limits: scan.Limits{MaxDepth: 2}, rule: "archive/depth-limit", members: []string{"inner", "inner", "inner"}},
		{name: "member limit", data: []byte("NESTNESTEVIL"), limits: scan.Limits{MaxMembers: 1}, rule: "archive/member-limit", members: []string{"inner", "inner"}},
		{name: "expansion limit", data: append([]byte("NEST"), bytes.Repeat([]byte("A"), 100)...), limits: scan.Limits{MaxExpanded: 10}, rule: "archive/expansion-limit", members: []string{"inner"}},
		{name: "streamed expansion limit, spilled to disk", data: append([]byte("NEST"), bytes.Repeat([]byte("A"), 100)...), stream: true,
			limits: scan.Limits{MaxExpanded: 50, SpillBytes: 8}, rule: "archive/expansion-limit", members: []string{"inner"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := scanBytes(t, tt.data, tt.limits, tt.stream)
			if len(f.Findings) != 1 || f.Findings[0].Rule != tt.rule {
				t.Fatalf("findings = %v, want one %s", f.Findings, tt.rule)
			}
			if got := strings.Join(f.Findings[0].Location.Members, "/"); got != strings.Join(tt.members, "/") {
				t.Errorf("members = %q, want %q", got, tt.members)
			}
		})
	}
}

func TestSpilledMemberIsScanned(t *testing.T) {
	data := append([]byte("NESTEVIL"), bytes.Repeat([]byte("x"), 1000)...)
	f := scanBytes(t, data, scan.Limits{SpillBytes: 16}, true)
	if len(f.Findings) != 1 || f.Findings[0].Rule != "test/evil" {
		t.Fatalf("findings = %v", f.Findings)
	}
}

func TestExitCode(t *testing.T) {
	crit := finding.Finding{Severity: finding.Critical}
	low := finding.Finding{Severity: finding.Low}
	prob := []scan.Problem{{Message: "broken"}}
	tests := []struct {
		files  []scan.File
		failOn finding.Severity
		want   int
	}{
		{nil, finding.Medium, 0},
		{[]scan.File{{Findings: []finding.Finding{low}}}, finding.Medium, 0},
		{[]scan.File{{Findings: []finding.Finding{low}}}, finding.Low, 1},
		{[]scan.File{{Errors: prob}}, finding.Medium, 2},
		{[]scan.File{{Errors: prob, Findings: []finding.Finding{crit}}}, finding.Medium, 1},
		{[]scan.File{{Errors: prob}, {Findings: []finding.Finding{crit}}}, finding.Critical, 1},
	}
	for i, tt := range tests {
		r := &scan.Result{Files: tt.files}
		if got := r.ExitCode(tt.failOn); got != tt.want {
			t.Errorf("%d: exit = %d, want %d", i, got, tt.want)
		}
	}
}

// TestRunFolder walks a real folder: every file is sniffed whatever its
// name, a symlink out of the folder is a finding and is not followed, a
// symlink inside it is scanned, a FIFO is listed and not opened.
func TestRunFolder(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "sub", "config.json"), "EVIL") // name does not matter
	write(filepath.Join(dir, "readme"), "hello")
	write(filepath.Join(outside, "secret"), "EVIL")
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/config.json", filepath.Join(dir, "inside")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := scan.Run(context.Background(), []string{dir}, scan.Options{Scanners: []scan.Scanner{evilFormat{}}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]scan.File{}
	for _, f := range res.Files {
		byName[filepath.Base(f.Path)] = f
	}
	if f := byName["config.json"]; len(f.Findings) != 1 || f.Findings[0].Rule != "test/evil" {
		t.Errorf("config.json: %+v", f)
	}
	if f := byName["inside"]; len(f.Findings) != 1 || f.Findings[0].Rule != "test/evil" {
		t.Errorf("inside link: %+v", f)
	}
	if f := byName["escape"]; len(f.Findings) != 1 || f.Findings[0].Rule != "fs/symlink-escape" {
		t.Errorf("escape link: %+v", f)
	}
	if f := byName["readme"]; len(f.Unscanned) != 1 {
		t.Errorf("readme should be listed as not scanned: %+v", f)
	}
	if f := byName["pipe"]; len(f.Unscanned) != 1 || !strings.Contains(f.Unscanned[0].Message, "not a regular file") {
		t.Errorf("pipe: %+v", f)
	}
	if len(res.Files) != 5 {
		t.Errorf("files = %d, want 5", len(res.Files))
	}
	if got := res.ExitCode(finding.Medium); got != 1 {
		t.Errorf("exit = %d", got)
	}
	// A missing path is an error of its own, not a crash.
	res, err = scan.Run(context.Background(), []string{filepath.Join(dir, "nope")}, scan.Options{Scanners: []scan.Scanner{evilFormat{}}})
	if err != nil || res.ExitCode(finding.Medium) != 2 {
		t.Fatalf("missing path: %v %+v", err, res)
	}
}

// TestRunHFCache scans hf://org/name from a cache laid out as
// huggingface_hub does: links into blobs are followed (they stay inside
// the repository), findings are named below the reference, and a tampered
// blob is reported on the file that links to it.
func TestRunHFCache(t *testing.T) {
	hub := t.TempDir()
	repo := filepath.Join(hub, "models--acme--tiny")
	const rev = "0123456789abcdef0123456789abcdef01234567"
	snap := filepath.Join(repo, "snapshots", rev)
	for _, d := range []string{filepath.Join(repo, "blobs"), filepath.Join(repo, "refs"), snap} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(rev), 0o644)
	// A blob whose name is not the sha256 of its content: tampered.
	blob := filepath.Join(repo, "blobs", strings.Repeat("ab", 32))
	os.WriteFile(blob, []byte("EVIL"), 0o644)
	os.Symlink("../../blobs/"+filepath.Base(blob), filepath.Join(snap, "pytorch_model.bin"))
	env := func(k string) string {
		if k == "HF_HUB_CACHE" {
			return hub
		}
		return ""
	}
	res, err := scan.Run(context.Background(), []string{"hf://acme/tiny"}, scan.Options{Scanners: []scan.Scanner{evilFormat{}}, Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 1 || res.Files[0].Path != "hf://acme/tiny/pytorch_model.bin" {
		t.Fatalf("files: %+v", res.Files)
	}
	rules := map[string]bool{}
	for _, f := range res.Files[0].Findings {
		rules[f.Rule] = true
	}
	if !rules["test/evil"] || !rules["hf/blob-mismatch"] || rules["fs/symlink-escape"] {
		t.Fatalf("findings: %v", res.Files[0].Findings)
	}
}
