package oms

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Diff lists the files whose content differs from a signed manifest.
type Diff struct {
	// Changed files are signed and present with other content (for shards:
	// any shard differs, or the file was truncated or extended).
	Changed []string
	// Missing files are signed but absent.
	Missing []string
	// Extra files are present but not signed.
	Extra []string
}

// Empty reports whether the model matches.
func (d *Diff) Empty() bool {
	return len(d.Changed) == 0 && len(d.Missing) == 0 && len(d.Extra) == 0
}

// String lists every difference, one per line.
func (d *Diff) String() string {
	var b strings.Builder
	for _, n := range d.Changed {
		fmt.Fprintf(&b, "\n  changed: %s", n)
	}
	for _, n := range d.Missing {
		fmt.Fprintf(&b, "\n  missing: %s", n)
	}
	for _, n := range d.Extra {
		fmt.Fprintf(&b, "\n  extra (not signed): %s", n)
	}
	return fmt.Sprintf("%d changed, %d missing, %d extra file(s):%s", len(d.Changed), len(d.Missing), len(d.Extra), b.String())
}

// CompareOptions tunes Compare.
type CompareOptions struct {
	// IgnoreUnsigned accepts files that the signature does not list.
	IgnoreUnsigned bool
	// SingleFile is the file name of a single-file model; the signed
	// resource "." (model_signing's name for it) then means this file.
	SingleFile string
}

type piece struct {
	start, end int64
	sum        []byte
}

// resourceFile returns the file a resource names (the whole name for files,
// the path part for shards), after checking that it is a clean relative
// model path: no "..", no absolute path, no empty or "." component.
func (m *Manifest) resourceFile(r Resource, singleFile string) (string, piece, error) {
	name := r.Name
	p := piece{sum: r.Digest, end: -1}
	if m.Serialization.Method == MethodShards {
		f, s, e, err := ParseShardName(r.Name)
		if err != nil {
			return "", p, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		name, p.start, p.end = f, s, e
	}
	if singleFile != "" && name == "." {
		name = singleFile
	}
	c, err := modelfs.CleanName(name)
	if err != nil || c != name || c == "." {
		return "", p, fmt.Errorf("%w: resource name %q is not a clean path inside the model", ErrMalformed, r.Name)
	}
	return name, p, nil
}

// Files returns the set of file names the manifest covers.
func (m *Manifest) Files(singleFile string) (map[string]bool, error) {
	out := make(map[string]bool, len(m.Resources))
	for _, r := range m.Resources {
		f, _, err := m.resourceFile(r, singleFile)
		if err != nil {
			return nil, err
		}
		out[f] = true
	}
	return out, nil
}

func (m *Manifest) byFile(singleFile string) (map[string][]piece, error) {
	out := make(map[string][]piece, len(m.Resources))
	for _, r := range m.Resources {
		f, p, err := m.resourceFile(r, singleFile)
		if err != nil {
			return nil, err
		}
		out[f] = append(out[f], p)
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b piece) int { return int(a.start - b.start) })
	}
	return out, nil
}

// Compare checks a freshly hashed manifest against the signed one, file by
// file. Resource order does not matter. It fails (error) only when a name
// in either manifest is not a clean model path.
func Compare(signed, actual *Manifest, opts CompareOptions) (*Diff, error) {
	want, err := signed.byFile(opts.SingleFile)
	if err != nil {
		return nil, err
	}
	got, err := actual.byFile(opts.SingleFile)
	if err != nil {
		return nil, err
	}
	d := &Diff{}
	for name, wp := range want {
		gp, ok := got[name]
		if !ok {
			d.Missing = append(d.Missing, name)
			continue
		}
		if !samePieces(wp, gp) {
			d.Changed = append(d.Changed, name)
		}
	}
	if !opts.IgnoreUnsigned {
		for name := range got {
			if _, ok := want[name]; !ok {
				d.Extra = append(d.Extra, name)
			}
		}
	}
	for _, l := range [][]string{d.Changed, d.Missing, d.Extra} {
		slices.SortFunc(l, modelfs.Compare)
	}
	return d, nil
}

func samePieces(a, b []piece) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].start != b[i].start || a[i].end != b[i].end || !bytes.Equal(a[i].sum, b[i].sum) {
			return false
		}
	}
	return true
}
