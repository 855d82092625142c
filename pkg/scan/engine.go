package scan

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/hfcache"
	"github.com/modelseal/modelseal/pkg/policy"
)

// File is the result of scanning one top-level file.
type File struct {
	// Path is the file as named (a command-line argument, or joined below a
	// folder argument).
	Path string `json:"path"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Formats are the formats recognised in the file, outermost first.
	Formats []string `json:"formats"`
	// Findings are what the scanners reported.
	Findings []finding.Finding `json:"findings"`
	// Errors are streams that could not be (fully) scanned.
	Errors []Problem `json:"errors"`
	// Unscanned are streams deliberately not scanned (unknown format).
	Unscanned []Problem `json:"unscanned"`
	// Metadata holds facts scanners read from the file for the BOM and
	// reports, under keys named by format ("safetensors.tensors",
	// "gguf.general.architecture", "onnx.producer"). Members of containers
	// prefix the member path ("archive/data.pkl:pickle.imports").
	Metadata map[string]any `json:"metadata,omitempty"`
	// Duration is how long the scan of the file took.
	Duration time.Duration `json:"-"`
}

// Rules returns the rule ids of the file's findings, in order.
func (f *File) Rules() []string {
	out := make([]string, 0, len(f.Findings))
	for _, x := range f.Findings {
		out = append(out, x.Rule)
	}
	return out
}

// MaxSeverity returns the highest severity among the file's findings
// (Info when there are none).
func (f *File) MaxSeverity() finding.Severity {
	s := finding.Info
	for _, x := range f.Findings {
		s = max(s, x.Severity)
	}
	return s
}

// ScanBytes scans an in-memory stream as if it were the file named name.
func ScanBytes(ctx context.Context, name string, data []byte, opts Options) File {
	file := File{Path: name, Size: int64(len(data))}
	loc := finding.Location{Path: name, Offset: -1}
	env := NewEnv(opts.Policy, opts.Limits, opts.Scanners, &file)
	if err := env.Dispatch(ctx, Input{R: bytes.NewReader(data), Size: int64(len(data)), Loc: loc, Name: filepath.Base(name)}); err != nil {
		env.Fail(loc, err)
	}
	return file
}

// Result is a whole run.
type Result struct {
	Files []File `json:"files"`
	// Bytes is the total size of the top-level files scanned.
	Bytes int64 `json:"bytes"`
	// Duration is the wall time of the run.
	Duration time.Duration `json:"-"`
}

// Findings returns every finding of the run, in file order.
func (r *Result) Findings() []finding.Finding {
	var out []finding.Finding
	for _, f := range r.Files {
		out = append(out, f.Findings...)
	}
	return out
}

// Exit codes of a scan.
const (
	ExitClean    = 0 // nothing at or above the threshold, every file scanned
	ExitFindings = 1 // a finding at or above the threshold
	ExitError    = 2 // a file or member could not be scanned
)

// ExitCode returns 1 when any finding is at or above failOn, else 2 when any
// stream could not be scanned, else 0. A file that is both broken and
// malicious therefore exits 1: the error never hides the finding.
func (r *Result) ExitCode(failOn finding.Severity) int {
	code := ExitClean
	for _, f := range r.Files {
		for _, x := range f.Findings {
			if x.Severity >= failOn {
				return ExitFindings
			}
		}
		if len(f.Errors) > 0 {
			code = ExitError
		}
	}
	return code
}

// Options configure a run. Scanners is required; the rest have defaults.
type Options struct {
	// Scanners in the order they are tried (see scanners/all).
	Scanners []Scanner
	// Policy judges globals and rules (default policy.Default()).
	Policy *policy.Policy
	// Limits bound each top-level file.
	Limits Limits
	// Workers is how many files are scanned at once (default GOMAXPROCS).
	Workers int
	// Progress, when set, is called after each file with the count done,
	// the total and the file's size.
	Progress func(done, total int, size int64)
	// Getenv reads the environment (default os.Getenv); it locates the
	// Hugging Face cache for hf:// references.
	Getenv func(string) string
}

// Target is one file to scan: the name findings use, and the path opened.
type Target struct {
	// Path names the file in findings and reports.
	Path string
	// Real is the path opened (a followed link's target, a blob).
	Real string
	// Size is the file's size, for progress reports.
	Size int64
}

// ScanTargets scans files opts.Workers at a time and returns their results
// in the order given. It returns an error only when the context ends.
func ScanTargets(ctx context.Context, targets []Target, opts Options) ([]File, error) {
	if opts.Policy == nil {
		opts.Policy = policy.Default()
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	files := make([]File, len(targets))
	var wg sync.WaitGroup
	next := make(chan int)
	var mu sync.Mutex
	done := 0
	for range min(workers, max(len(targets), 1)) {
		wg.Go(func() {
			for i := range next {
				files[i] = ScanFile(ctx, targets[i].Path, targets[i].Real, opts)
				if opts.Progress != nil {
					mu.Lock()
					done++
					opts.Progress(done, len(targets), targets[i].Size)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range targets {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return files, nil
}

// Run scans the given files and folders. Folders are walked recursively;
// every regular file is sniffed, none is skipped for its name. A symbolic
// link is followed only when it resolves inside the folder being walked. Run
// returns an error only when the context ends; unreadable paths are recorded
// as errors in the result.
func Run(ctx context.Context, paths []string, opts Options) (*Result, error) {
	if opts.Policy == nil {
		opts.Policy = policy.Default()
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	res := &Result{}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	var jobs []Target
	var repos []cachedRepo
	for _, p := range paths {
		repo, ok, err := hfcache.Resolve(p, opts.Getenv)
		switch {
		case err != nil:
			res.Files = append(res.Files, File{Path: p, Errors: []Problem{{Location: finding.Location{Path: p, Offset: -1}, Message: err.Error()}}})
		case ok:
			// A cache snapshot is a folder of links into the repository's
			// blobs: follow links inside the repository, not just the snapshot.
			display := p
			if !strings.HasPrefix(p, "hf://") {
				display = repo.Snapshot
			}
			repos = append(repos, cachedRepo{repo: repo, display: display})
			jobs = append(jobs, collect(repo.Snapshot, display, repo.Dir, res)...)
		default:
			jobs = append(jobs, collect(p, p, "", res)...)
		}
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Path < jobs[j].Path })
	files, err := ScanTargets(ctx, jobs, opts)
	if err != nil {
		return nil, err
	}
	res.Files = append(res.Files, files...)
	for _, c := range repos {
		if err := checkRepo(ctx, c, workers, res); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(res.Files, func(i, j int) bool { return res.Files[i].Path < res.Files[j].Path })
	for _, f := range files {
		res.Bytes += f.Size
	}
	res.Duration = time.Since(start)
	return res, nil
}

// cachedRepo is a Hugging Face cache entry named on the command line.
type cachedRepo struct {
	repo    *hfcache.Repo
	display string
}

// checkRepo adds the cache's integrity findings to the files they are about.
func checkRepo(ctx context.Context, c cachedRepo, workers int, res *Result) error {
	display := func(rel string) string { return joinDisplay(c.display, rel) }
	fs, err := c.repo.Check(ctx, workers, display)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res.Files = append(res.Files, File{Path: c.display, Errors: []Problem{{Location: finding.Location{Path: c.display, Offset: -1}, Message: err.Error()}}})
		return nil
	}
	index := map[string]int{}
	for i, f := range res.Files {
		index[f.Path] = i
	}
	for _, f := range fs {
		if i, ok := index[f.Location.Path]; ok {
			res.Files[i].Findings = append(res.Files[i].Findings, f)
			continue
		}
		res.Files = append(res.Files, File{Path: f.Location.Path, Findings: []finding.Finding{f}})
		index[f.Location.Path] = len(res.Files) - 1
	}
	return nil
}

// joinDisplay names a file below a displayed root ("hf://org/name" +
// "config.json").
func joinDisplay(root, rel string) string {
	if strings.HasPrefix(root, "hf://") {
		return strings.TrimSuffix(root, "/") + "/" + rel
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

// collect lists the regular files under p, naming them below display.
// Symbolic links are followed only when they resolve inside contain (p
// itself when empty). Problems (a missing path, a symlink out of the folder,
// a special file) go into res as files of their own, so nothing is skipped
// silently.
func collect(p, display, contain string, res *Result) []Target {
	st, err := os.Stat(p)
	if err != nil {
		res.Files = append(res.Files, File{Path: p, Errors: []Problem{{Location: finding.Location{Path: p, Offset: -1}, Message: err.Error()}}})
		return nil
	}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			res.Files = append(res.Files, File{Path: p, Unscanned: []Problem{{Location: finding.Location{Path: p, Offset: -1}, Message: "not a regular file (" + st.Mode().Type().String() + ")"}}})
			return nil
		}
		return []Target{{Path: display, Real: p, Size: st.Size()}}
	}
	if contain == "" {
		contain = p
	}
	root, err := filepath.EvalSymlinks(contain)
	if err != nil {
		res.Files = append(res.Files, File{Path: p, Errors: []Problem{{Location: finding.Location{Path: p, Offset: -1}, Message: err.Error()}}})
		return nil
	}
	root, _ = filepath.Abs(root)
	var out []Target
	walkErr := filepath.WalkDir(p, func(real string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(p, real)
		path := joinDisplay(display, filepath.ToSlash(rel))
		loc := finding.Location{Path: path, Offset: -1}
		if err != nil {
			res.Files = append(res.Files, File{Path: path, Errors: []Problem{{Location: loc, Message: err.Error()}}})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(real)
			if err != nil {
				res.Files = append(res.Files, File{Path: path, Findings: []finding.Finding{{Rule: "fs/broken-symlink", Severity: finding.Low, Location: loc,
					Message: "symbolic link does not resolve: " + err.Error()}}})
				return nil
			}
			abs, _ := filepath.Abs(target)
			if !within(root, abs) {
				res.Files = append(res.Files, File{Path: path, Findings: []finding.Finding{{Rule: "fs/symlink-escape", Severity: finding.High, Location: loc,
					Message:  fmt.Sprintf("symbolic link points outside the scanned folder, to %s; a loader would read it, the scanner does not follow it", target),
					Evidence: map[string]string{"target": target}}}})
				return nil
			}
			st, err := os.Stat(abs)
			if err != nil || !st.Mode().IsRegular() {
				res.Files = append(res.Files, File{Path: path, Unscanned: []Problem{{Location: loc, Message: "symbolic link to a folder or special file inside the scanned folder; not followed"}}})
				return nil
			}
			out = append(out, Target{Path: path, Real: abs, Size: st.Size()})
		case t.IsRegular():
			info, err := d.Info()
			if err != nil {
				res.Files = append(res.Files, File{Path: path, Errors: []Problem{{Location: loc, Message: err.Error()}}})
				return nil
			}
			out = append(out, Target{Path: path, Real: real, Size: info.Size()})
		default:
			res.Files = append(res.Files, File{Path: path, Unscanned: []Problem{{Location: loc, Message: "not a regular file (" + t.String() + ")"}}})
		}
		return nil
	})
	if walkErr != nil {
		res.Files = append(res.Files, File{Path: display, Errors: []Problem{{Location: finding.Location{Path: display, Offset: -1}, Message: walkErr.Error()}}})
	}
	return out
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// ScanFile scans one file: display is the name used in findings, real the
// path opened.
func ScanFile(ctx context.Context, display, real string, opts Options) File {
	start := time.Now()
	file := File{Path: display}
	loc := finding.Location{Path: display, Offset: -1}
	f, err := os.Open(real)
	if err != nil {
		file.Errors = append(file.Errors, Problem{Location: loc, Message: err.Error()})
		return file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		file.Errors = append(file.Errors, Problem{Location: loc, Message: err.Error()})
		return file
	}
	file.Size = st.Size()
	env := NewEnv(opts.Policy, opts.Limits, opts.Scanners, &file)
	if err := env.Dispatch(ctx, Input{R: f, Size: st.Size(), Loc: loc, Name: filepath.Base(display)}); err != nil {
		env.Fail(loc, err)
	}
	file.Duration = time.Since(start)
	return file
}
