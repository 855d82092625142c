package sbom

import (
	"context"
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
	var targets []scan.Target
	var index []int // set file index of each target
	files := make([]scan.File, len(set.Files))
	for i, f := range set.Files {
		if f.Path == "" {
			files[i] = scan.File{Path: f.Name, Size: f.Size, Unscanned: []scan.Problem{{
				Location: finding.Location{Path: f.Name, Offset: -1}, Message: "not on the local file system"}}}
			continue
		}
		targets = append(targets, scan.Target{Path: f.Name, Real: f.Path, Size: f.Size})
		index = append(index, i)
	}
	scanned, err := scan.ScanTargets(ctx, targets, opts)
	if err != nil {
		return nil, err
	}
	for k, f := range scanned {
		files[index[k]] = f
	}
	res := &scan.Result{Files: files, Duration: time.Since(start)}
	for _, f := range files {
		res.Bytes += f.Size
	}
	return res, nil
}
