package sbom

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/scan"
)

// ScanSet scans every file of a set with the scan engine, naming each file
// by its name in the set (so findings point at the BOM's file components).
// Files are scanned opts.Workers at a time. It returns an error only when
// the context ends.
func ScanSet(ctx context.Context, set *modelfs.Set, opts scan.Options) (*scan.Result, error) {
	start := time.Now()
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	files := make([]scan.File, len(set.Files))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range min(workers, max(len(set.Files), 1)) {
		wg.Go(func() {
			for i := range next {
				f := set.Files[i]
				if f.Path == "" {
					files[i] = scan.File{Path: f.Name, Size: f.Size, Unscanned: []scan.Problem{{
						Location: finding.Location{Path: f.Name, Offset: -1}, Message: "not on the local file system"}}}
				} else {
					files[i] = scan.ScanFile(ctx, f.Name, f.Path, opts)
				}
				if opts.Progress != nil {
					mu.Lock()
					done++
					opts.Progress(done, len(set.Files), f.Size)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for i := range set.Files {
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
	res := &scan.Result{Files: files, Duration: time.Since(start)}
	for _, f := range files {
		res.Bytes += f.Size
	}
	return res, nil
}
