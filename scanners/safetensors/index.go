package safetensors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/internal/pathcheck"
)

// Rule ids of the index scanner.
const (
	RuleIndexUnsafePath   = "safetensors/index-unsafe-path"
	RuleIndexMissingShard = "safetensors/index-missing-shard"
	RuleIndexDuplicate    = "safetensors/index-duplicate-tensor"
	RuleIndexMismatch     = "safetensors/index-mismatch"
)

// MaxIndexSize bounds the index files read into memory.
const MaxIndexSize = 64 << 20

// maxShards bounds how many shard headers one index makes the scanner read.
const maxShards = 10_000

// IndexScanner is the scan.Scanner for sharded-model index files
// (model.safetensors.index.json): a JSON object whose "weight_map" maps
// tensor names to shard file names. For a file on disk it also reads every
// shard's header, to check that each shard is present inside the folder
// and that no tensor is claimed twice.
type IndexScanner struct{}

// Format implements scan.Scanner.
func (IndexScanner) Format() string { return "safetensors-index" }

// Match implements scan.Scanner: a JSON object with a "weight_map" key in
// its first bytes (writers put it right after the small "metadata").
func (IndexScanner) Match(head []byte, size int64) bool {
	t := bytes.TrimLeft(head, " \t\r\n")
	return size <= MaxIndexSize && len(t) > 0 && t[0] == '{' && bytes.Contains(head, []byte(`"weight_map"`))
}

// Index is a parsed index file.
type Index struct {
	// WeightMap maps each tensor to its shard.
	WeightMap map[string]string
	// Offsets of each tensor's key in the file.
	Offsets map[string]int64
	// Duplicates are tensors listed twice, with the offset of the repeat.
	Duplicates []Problem
	// TotalSize is metadata.total_size, or -1.
	TotalSize int64
}

// ParseIndex parses an index file. It returns scan.ErrNotFormat when data
// is JSON without a weight_map object.
func ParseIndex(data []byte) (*Index, error) {
	d := decoder{Decoder: json.NewDecoder(bytes.NewReader(data)), format: "safetensors-index"}
	d.UseNumber()
	t, err := d.token()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", scan.ErrNotFormat, err)
	}
	if t != json.Delim('{') {
		return nil, scan.ErrNotFormat
	}
	idx := &Index{TotalSize: -1}
	for d.More() {
		kt, err := d.token()
		if err != nil {
			return nil, err
		}
		switch kt.(string) {
		case "weight_map":
			if err := idx.parseWeightMap(d); err != nil {
				return nil, err
			}
		case "metadata":
			v, err := d.token()
			if err != nil {
				return nil, err
			}
			if v != json.Delim('{') {
				if err := d.skip(v); err != nil {
					return nil, err
				}
				continue
			}
			for d.More() {
				k, err := d.token()
				if err != nil {
					return nil, err
				}
				v, err := d.token()
				if err != nil {
					return nil, err
				}
				if k == "total_size" {
					if n, ok := parseUint(v); ok && n <= 1<<62 {
						idx.TotalSize = int64(n)
					}
				}
				if err := d.skip(v); err != nil {
					return nil, err
				}
			}
			if _, err := d.token(); err != nil {
				return nil, err
			}
		default:
			v, err := d.token()
			if err != nil {
				return nil, err
			}
			if err := d.skip(v); err != nil {
				return nil, err
			}
		}
	}
	if _, err := d.token(); err != nil {
		return nil, err
	}
	if t, err := d.Token(); err != io.EOF {
		return nil, d.fail(d.off(), fmt.Sprintf("content after the JSON object: %v", t))
	}
	if idx.WeightMap == nil {
		return nil, scan.ErrNotFormat
	}
	return idx, nil
}

func (idx *Index) parseWeightMap(d decoder) error {
	off := d.off()
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		return d.fail(off, "weight_map is not an object")
	}
	idx.WeightMap = map[string]string{}
	idx.Offsets = map[string]int64{}
	for d.More() {
		koff := d.off()
		kt, err := d.token()
		if err != nil {
			return err
		}
		name := kt.(string)
		v, err := d.token()
		if err != nil {
			return err
		}
		shard, ok := v.(string)
		if !ok {
			return d.fail(koff, fmt.Sprintf("weight_map value of %q is not a string", name))
		}
		if prev, dup := idx.WeightMap[name]; dup {
			if len(idx.Duplicates) < maxProblems {
				idx.Duplicates = append(idx.Duplicates, Problem{Kind: "duplicate-key", Off: koff,
					Msg: fmt.Sprintf("tensor %q is listed twice in weight_map, in %q and %q", name, prev, shard)})
			}
			continue
		}
		idx.WeightMap[name] = shard
		idx.Offsets[name] = koff
	}
	_, err = d.token()
	return err
}

// Shards returns the distinct shard names, sorted.
func (idx *Index) Shards() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range idx.WeightMap {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Scan implements scan.Scanner.
func (s IndexScanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	if in.Size > MaxIndexSize {
		return scan.ErrNotFormat
	}
	data := make([]byte, in.Size)
	if _, err := in.R.ReadAt(data, 0); err != nil {
		return fmt.Errorf("safetensors-index: reading: %w", err)
	}
	idx, err := ParseIndex(data)
	if err != nil {
		return err
	}
	for _, p := range idx.Duplicates {
		env.Report(finding.Finding{Rule: RuleIndexDuplicate, Severity: finding.Medium, Location: in.At(p.Off), Message: p.Msg})
	}
	shards := idx.Shards()
	env.SetMeta(in, "safetensors.index.shards", shards)
	env.SetMeta(in, "safetensors.index.tensors", len(idx.WeightMap))
	if idx.TotalSize >= 0 {
		env.SetMeta(in, "safetensors.index.total_size", idx.TotalSize)
	}
	var safe []string
	for _, sh := range shards {
		if why := pathcheck.Unsafe(sh); why != "" {
			env.Report(finding.Finding{Rule: RuleIndexUnsafePath, Severity: finding.High, Location: in.At(-1),
				Message:  fmt.Sprintf("weight_map names shard %q: %s; a loader would read a file outside the model folder", sh, why),
				Evidence: map[string]string{"shard": sh}})
			continue
		}
		safe = append(safe, sh)
	}
	if in.Depth != 0 || in.Loc.Path == "" {
		return nil // a member of a container: no folder to check against
	}
	return checkShards(ctx, in, env, idx, safe)
}

// checkShards reads the header of every shard next to the index file.
func checkShards(ctx context.Context, in scan.Input, env *scan.Env, idx *Index, shards []string) error {
	dir := filepath.Dir(in.Loc.Path)
	owner := map[string]string{} // tensor -> first shard whose header has it
	headers := map[string]map[string]bool{}
	if len(shards) > maxShards {
		env.Report(finding.Finding{Rule: RuleIndexMismatch, Severity: finding.Low, Location: in.At(-1),
			Message: fmt.Sprintf("index names %d shards; only the first %d are checked", len(shards), maxShards)})
		shards = shards[:maxShards]
	}
	for _, sh := range shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		real, size, err := pathcheck.Resolve(dir, sh)
		switch {
		case errors.Is(err, pathcheck.ErrEscape):
			env.Report(finding.Finding{Rule: RuleIndexUnsafePath, Severity: finding.High, Location: in.At(-1),
				Message:  fmt.Sprintf("shard %q is a symbolic link out of the model folder: %v", sh, err),
				Evidence: map[string]string{"shard": sh, "target": real}})
			continue
		case err != nil:
			env.Report(finding.Finding{Rule: RuleIndexMissingShard, Severity: finding.Low, Location: in.At(-1),
				Message:  fmt.Sprintf("shard %q named by the index is not usable: %v", sh, err),
				Evidence: map[string]string{"shard": sh}})
			continue
		}
		f, err := os.Open(real)
		if err != nil {
			env.Report(finding.Finding{Rule: RuleIndexMissingShard, Severity: finding.Low, Location: in.At(-1),
				Message: fmt.Sprintf("shard %q cannot be opened: %v", sh, err), Evidence: map[string]string{"shard": sh}})
			continue
		}
		h, err := ReadHeader(f, size)
		f.Close()
		if err != nil {
			// The shard is scanned as a file of its own, which reports this.
			continue
		}
		names := map[string]bool{}
		for _, t := range h.Tensors {
			names[t.Name] = true
			if first, dup := owner[t.Name]; dup {
				env.Report(finding.Finding{Rule: RuleIndexDuplicate, Severity: finding.Medium, Location: in.At(-1),
					Message:  fmt.Sprintf("tensor %q is stored in shard %q and again in %q; which one a loader keeps depends on load order", t.Name, first, sh),
					Evidence: map[string]string{"tensor": t.Name, "shards": first + "," + sh}})
				continue
			}
			owner[t.Name] = sh
			if want, listed := idx.WeightMap[t.Name]; !listed {
				env.Report(finding.Finding{Rule: RuleIndexMismatch, Severity: finding.Low, Location: in.At(-1),
					Message: fmt.Sprintf("tensor %q in shard %q is not listed in weight_map", t.Name, sh)})
			} else if want != sh {
				env.Report(finding.Finding{Rule: RuleIndexMismatch, Severity: finding.Low, Location: in.At(idx.Offsets[t.Name]),
					Message: fmt.Sprintf("tensor %q is in shard %q but weight_map says %q", t.Name, sh, want)})
			}
		}
		headers[sh] = names
	}
	var missing []string
	for name, sh := range idx.WeightMap {
		if names, ok := headers[sh]; ok && !names[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	for i, name := range missing {
		if i == maxProblems {
			env.Report(finding.Finding{Rule: RuleIndexMismatch, Severity: finding.Low, Location: in.At(-1),
				Message: strconv.Itoa(len(missing)-i) + " more tensors of weight_map are missing from their shards"})
			break
		}
		env.Report(finding.Finding{Rule: RuleIndexMismatch, Severity: finding.Low, Location: in.At(idx.Offsets[name]),
			Message: fmt.Sprintf("weight_map puts tensor %q in shard %q, whose header does not have it", name, idx.WeightMap[name])})
	}
	return nil
}
