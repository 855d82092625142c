// Command modelseal-bench runs modelseal's benchmarks (make bench). It
// generates its large inputs in a work folder (never committed), runs each
// measurement several times, each as a separate process so that peak memory
// (max RSS) is the measured command's own, and reports medians next to a
// baseline measured in the same run, since the machines are shared and
// noisy.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bench is one named benchmark.
type bench struct {
	name string
	run  func(c *config) error
}

// benchmarks lists every benchmark; each file of this command adds its own.
var benchmarks = []bench{
	{name: "scan", run: benchScan},
	{name: "scan7b", run: benchScan7B},
	{name: "bom", run: benchBOM},
	{name: "hash", run: benchHash},
	{name: "oci", run: benchOCI},
}

type config struct {
	work   string // folder for generated inputs
	bin    string // the modelseal binary under test
	runs   int
	large  int64 // bytes of the large generated inputs
	python string
}

func main() {
	var (
		only  = flag.String("only", "", "run only the benchmarks whose names contain this")
		work  = flag.String("work", filepath.Join(os.TempDir(), "modelseal-bench"), "folder for generated inputs (kept between runs)")
		runs  = flag.Int("runs", 5, "repetitions of each measurement; medians are reported")
		large = flag.Int64("large-mb", 1024, "size of the large generated inputs in MB")
	)
	flag.Parse()
	if err := os.MkdirAll(*work, 0o755); err != nil {
		fatal(err)
	}
	bin := filepath.Join(*work, "modelseal")
	fmt.Printf("building modelseal into %s\n", bin)
	build := exec.Command("go", "build", "-o", bin, "./cmd/modelseal")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fatal(fmt.Errorf("go build: %w", err))
	}
	c := &config{work: *work, bin: bin, runs: *runs, large: *large << 20, python: "/usr/bin/python3"}
	failed := false
	for _, b := range benchmarks {
		if *only != "" && !strings.Contains(b.name, *only) {
			continue
		}
		fmt.Printf("\n== %s\n", b.name)
		if err := b.run(c); err != nil {
			fmt.Fprintf(os.Stderr, "benchmark %s: %v\n", b.name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "modelseal-bench:", err)
	os.Exit(1)
}

// sample is one run of a command.
type sample struct {
	wall   time.Duration
	maxRSS int64 // bytes
	rchar  int64 // bytes the process read through read/pread (page cache or disk)
	exit   int
}

// measure runs a command once and returns its wall time, peak memory and
// the bytes it read. The benchmark process itself must stay small: Linux
// reports a child's peak RSS as at least the parent's at the time of the
// fork. The child is waited for without being reaped first (waitid with
// WNOWAIT), so that its /proc/PID/io can still be read.
// okExits lists the exit codes that count as success.
func measure(okExits []int, name string, args ...string) (sample, error) {
	cmd := exec.Command(name, args...)
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, fmt.Errorf("%s: %w", name, err)
	}
	var info unix.Siginfo
	werr := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	s := sample{wall: time.Since(start), rchar: -1}
	if werr == nil {
		s.rchar = procRchar(cmd.Process.Pid)
	}
	err := cmd.Wait()
	if cmd.ProcessState == nil {
		return s, fmt.Errorf("%s: %w", name, err)
	}
	s.exit = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.maxRSS = ru.Maxrss * 1024
	}
	for _, c := range okExits {
		if s.exit == c {
			return s, nil
		}
	}
	return s, fmt.Errorf("%s %s: exit %d: %s", name, strings.Join(args, " "), s.exit, lastLines(out.String(), 5))
}

// procRchar reads rchar from /proc/PID/io, or -1.
func procRchar(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stats are the medians of repeated samples.
type stats struct {
	wall   time.Duration
	maxRSS int64
	rchar  int64
}

// repeat measures a command c.runs times and returns the medians.
func (c *config) repeat(okExits []int, name string, args ...string) (stats, error) {
	var ss []sample
	for i := 0; i < c.runs; i++ {
		s, err := measure(okExits, name, args...)
		if err != nil {
			return stats{}, err
		}
		ss = append(ss, s)
	}
	return medians(ss), nil
}

// medians returns the median wall time, peak RSS and bytes read of samples
// (each median taken on its own).
func medians(ss []sample) stats {
	if len(ss) == 0 {
		return stats{rchar: -1}
	}
	walls := make([]time.Duration, len(ss))
	rss := make([]int64, len(ss))
	rchar := make([]int64, len(ss))
	for i, s := range ss {
		walls[i], rss[i], rchar[i] = s.wall, s.maxRSS, s.rchar
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	sort.Slice(rchar, func(i, j int) bool { return rchar[i] < rchar[j] })
	return stats{wall: walls[len(walls)/2], maxRSS: rss[len(rss)/2], rchar: rchar[len(rchar)/2]}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// row prints one result line.
func row(label string, s stats, bytes int64, files int, base *stats) {
	line := fmt.Sprintf("  %-44s median %8.3fs", label, s.wall.Seconds())
	if bytes > 0 {
		line += fmt.Sprintf("  %9.1f MB/s", mb(bytes)/s.wall.Seconds())
	}
	if files > 0 {
		line += fmt.Sprintf("  %9.0f files/s", float64(files)/s.wall.Seconds())
	}
	line += fmt.Sprintf("  peak RSS %6.1f MB", mb(s.maxRSS))
	if s.rchar >= 0 {
		line += fmt.Sprintf("  read %9.1f MB", mb(s.rchar))
	}
	if base != nil && s.wall > 0 {
		line += fmt.Sprintf("  speed ×%.2f vs baseline", base.wall.Seconds()/s.wall.Seconds())
	}
	fmt.Println(line)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// tailBuffer keeps the last 4 KB written to it, for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
