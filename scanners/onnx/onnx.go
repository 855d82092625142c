// Package onnx checks ONNX models (a protobuf ModelProto) without loading
// them: it decodes with protowire only the fields it needs, skipping tensor
// data, and checks every tensor's external data location (path traversal,
// CVE-2022-25882, CVE-2024-27318; symbolic links out of the folder; offset
// and length inside the file), operator domains outside the standard ones,
// and Python operators, which run code. It records the producer, IR
// version, opset imports and operator domains.
package onnx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/internal/pathcheck"
)

// Rule ids this package reports.
const (
	RuleExternalPath    = "onnx/external-data-path"
	RuleExternalMissing = "onnx/external-data-missing"
	RuleExternalBounds  = "onnx/external-data-bounds"
	RuleExternalData    = "onnx/external-data"
	RuleCustomDomain    = "onnx/custom-domain"
	RulePythonOp        = "onnx/python-op"
)

// Limits.
const (
	// MaxGraphDepth bounds subgraphs nested in If/Loop/Scan attributes.
	MaxGraphDepth = 64
	// maxName bounds the strings read (names, domains, keys, values).
	maxName = 4096
	// maxRefs bounds the external data references recorded.
	maxRefs = 100_000
)

// standardDomains are the operator sets of the ONNX specification.
var standardDomains = map[string]bool{"": true, "ai.onnx": true, "ai.onnx.ml": true, "ai.onnx.training": true, "ai.onnx.preview.training": true}

// runtimeDomains ship with common runtimes (ONNX Runtime contrib ops,
// onnxruntime-extensions, PyTorch's ATen fallback): no custom library is
// needed, so they are low.
var runtimeDomains = map[string]bool{
	"com.microsoft": true, "com.microsoft.nchwc": true, "com.microsoft.experimental": true, "com.microsoft.dml": true,
	"com.ms.internal.nhwc": true, "ai.onnx.contrib": true, "org.pytorch.aten": true,
}

// pythonOps run Python code in the runtime that registers them.
var pythonOps = map[string]bool{"PythonOp": true, "PyOp": true, "PyFunc": true, "PythonOpGrad": true}

// ExternalRef is one tensor whose data lives in another file.
type ExternalRef struct {
	Tensor   string
	Location string
	Offset   string
	Length   string
	At       int64 // file offset of the TensorProto
}

// Op is an operator use.
type Op struct {
	Domain, Type string
	At           int64 // first NodeProto using it
	Count        int
}

// Model is what the scanner reads from a ModelProto.
type Model struct {
	IRVersion       int64
	Producer        string
	ProducerVersion string
	Opsets          map[string]int64
	// Ops by domain and op_type.
	Ops map[[2]string]*Op
	// Functions are the domains of model-local functions.
	Functions map[string]bool
	External  []ExternalRef
	// MoreExternal counts references past maxRefs.
	MoreExternal int
	hasGraph     bool
}

// Domains returns the sorted operator domains the nodes use, with the
// default domain named "ai.onnx".
func (m *Model) Domains() []string {
	seen := map[string]bool{}
	var out []string
	for k := range m.Ops {
		d := domainName(k[0])
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func domainName(d string) string {
	if d == "" {
		return "ai.onnx"
	}
	return d
}

type parser struct {
	ctx context.Context
	w   *wire
	m   *Model
	n   int
}

// Parse decodes a ModelProto of the given size. It returns scan.ErrNotFormat
// when the protobuf has neither a graph nor an opset import.
func Parse(ctx context.Context, r io.ReaderAt, size int64) (*Model, error) {
	p := &parser{ctx: ctx, w: &wire{r: r, size: size}, m: &Model{Opsets: map[string]int64{}, Ops: map[[2]string]*Op{}, Functions: map[string]bool{}}}
	err := p.w.fields(0, size, func(f field) error {
		var err error
		switch {
		case f.Num == 1 && f.Type == protowire.VarintType:
			p.m.IRVersion = int64(f.V)
		case f.Num == 2:
			p.m.Producer, err = p.w.str(f, maxName)
		case f.Num == 3:
			p.m.ProducerVersion, err = p.w.str(f, maxName)
		case f.Num == 7 && f.Type == protowire.BytesType:
			p.m.hasGraph = true
			err = p.graph(f, 0)
		case f.Num == 8 && f.Type == protowire.BytesType:
			err = p.opset(f)
		case f.Num == 20 && f.Type == protowire.BytesType: // TrainingInfoProto
			err = p.w.fields(f.Start, f.End, func(g field) error {
				if (g.Num == 1 || g.Num == 2) && g.Type == protowire.BytesType {
					return p.graph(g, 1)
				}
				return nil
			})
		case f.Num == 25 && f.Type == protowire.BytesType:
			err = p.function(f)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !p.m.hasGraph && len(p.m.Opsets) == 0 {
		return nil, scan.ErrNotFormat
	}
	return p.m, nil
}

func (p *parser) tick() error {
	p.n++
	if p.n%4096 == 0 {
		return p.ctx.Err()
	}
	return nil
}

func (p *parser) opset(f field) error {
	var domain string
	var version int64
	err := p.w.fields(f.Start, f.End, func(g field) error {
		var err error
		switch {
		case g.Num == 1:
			domain, err = p.w.str(g, maxName)
		case g.Num == 2 && g.Type == protowire.VarintType:
			version = int64(g.V)
		}
		return err
	})
	p.m.Opsets[domainName(domain)] = version
	return err
}

func (p *parser) graph(f field, depth int) error {
	if depth > MaxGraphDepth {
		return fail(f.At, fmt.Sprintf("subgraphs nest deeper than %d", MaxGraphDepth), nil)
	}
	return p.w.fields(f.Start, f.End, func(g field) error {
		if g.Type != protowire.BytesType {
			return nil
		}
		switch g.Num {
		case 1:
			return p.node(g, depth)
		case 5:
			return p.tensor(g)
		case 15: // SparseTensorProto: values, indices
			return p.w.fields(g.Start, g.End, func(s field) error {
				if (s.Num == 1 || s.Num == 2) && s.Type == protowire.BytesType {
					return p.tensor(s)
				}
				return nil
			})
		}
		return nil
	})
}

func (p *parser) node(f field, depth int) error {
	if err := p.tick(); err != nil {
		return err
	}
	var domain, op string
	err := p.w.fields(f.Start, f.End, func(g field) error {
		var err error
		switch {
		case g.Num == 4:
			op, err = p.w.str(g, maxName)
		case g.Num == 7:
			domain, err = p.w.str(g, maxName)
		case g.Num == 5 && g.Type == protowire.BytesType:
			err = p.attribute(g, depth)
		}
		return err
	})
	if err != nil {
		return err
	}
	k := [2]string{domain, op}
	if o, ok := p.m.Ops[k]; ok {
		o.Count++
	} else {
		p.m.Ops[k] = &Op{Domain: domain, Type: op, At: f.At, Count: 1}
	}
	return nil
}

func (p *parser) attribute(f field, depth int) error {
	return p.w.fields(f.Start, f.End, func(g field) error {
		if g.Type != protowire.BytesType {
			return nil
		}
		switch g.Num {
		case 5, 10: // t, tensors
			return p.tensor(g)
		case 6, 11: // g, graphs
			return p.graph(g, depth+1)
		case 22, 23: // sparse_tensor, sparse_tensors
			return p.w.fields(g.Start, g.End, func(s field) error {
				if (s.Num == 1 || s.Num == 2) && s.Type == protowire.BytesType {
					return p.tensor(s)
				}
				return nil
			})
		}
		return nil
	})
}

func (p *parser) function(f field) error {
	return p.w.fields(f.Start, f.End, func(g field) error {
		switch {
		case g.Num == 10:
			d, err := p.w.str(g, maxName)
			p.m.Functions[d] = true
			return err
		case g.Num == 7 && g.Type == protowire.BytesType:
			return p.node(g, 1)
		}
		return nil
	})
}

func (p *parser) tensor(f field) error {
	if err := p.tick(); err != nil {
		return err
	}
	ref := ExternalRef{At: f.At}
	external, hasLocation := false, false
	err := p.w.fields(f.Start, f.End, func(g field) error {
		switch {
		case g.Num == 8:
			s, err := p.w.str(g, maxName)
			ref.Tensor = s
			return err
		case g.Num == 14 && g.Type == protowire.VarintType:
			external = g.V == 1
		case g.Num == 13 && g.Type == protowire.BytesType:
			var key, value string
			err := p.w.fields(g.Start, g.End, func(e field) error {
				var err error
				switch e.Num {
				case 1:
					key, err = p.w.str(e, maxName)
				case 2:
					value, err = p.w.str(e, maxName)
				}
				return err
			})
			switch key {
			case "location":
				ref.Location, hasLocation = value, true
			case "offset":
				ref.Offset = value
			case "length":
				ref.Length = value
			}
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if external || hasLocation {
		if len(p.m.External) < maxRefs {
			p.m.External = append(p.m.External, ref)
		} else {
			p.m.MoreExternal++
		}
	}
	return nil
}

// Scanner is the scan.Scanner for ONNX models.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "onnx" }

// Match implements scan.Scanner: a ModelProto as protobuf writers emit it,
// fields in order, starting with a small ir_version and followed by
// another ModelProto field of the right wire type.
func (Scanner) Match(head []byte, size int64) bool {
	if len(head) < 4 || head[0] != 0x08 {
		return false
	}
	v, n := protowire.ConsumeVarint(head[1:])
	if n < 0 || v < 1 || v > 64 {
		return false
	}
	num, typ, m := protowire.ConsumeTag(head[1+n:])
	if m < 0 {
		return false
	}
	switch num {
	case 2, 3, 4, 6, 7, 8, 14, 20, 25:
		return typ == protowire.BytesType
	case 5:
		return typ == protowire.VarintType
	}
	return false
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	m, err := Parse(ctx, in.R, in.Size)
	if err != nil {
		return err
	}
	env.SetMeta(in, "onnx.producer", m.Producer)
	env.SetMeta(in, "onnx.producer_version", m.ProducerVersion)
	env.SetMeta(in, "onnx.ir_version", m.IRVersion)
	env.SetMeta(in, "onnx.opsets", m.Opsets)
	env.SetMeta(in, "onnx.domains", m.Domains())
	reportOps(in, env, m)
	checkExternal(in, env, m)
	return nil
}

func reportOps(in scan.Input, env *scan.Env, m *Model) {
	type dom struct {
		ops []string
		at  int64
	}
	domains := map[string]*dom{}
	for _, o := range m.Ops {
		if pythonOps[o.Type] {
			env.Report(finding.Finding{Rule: RulePythonOp, Severity: finding.Critical, Location: in.At(o.At),
				Message:  fmt.Sprintf("operator %s (domain %s) runs Python code in the runtime that registers it (%d nodes)", o.Type, domainName(o.Domain), o.Count),
				Evidence: map[string]string{"op_type": o.Type, "domain": domainName(o.Domain)}})
		}
		if standardDomains[o.Domain] || m.Functions[o.Domain] {
			continue
		}
		d := domains[o.Domain]
		if d == nil {
			d = &dom{at: o.At}
			domains[o.Domain] = d
		}
		d.ops = append(d.ops, o.Type)
		d.at = min(d.at, o.At)
	}
	names := make([]string, 0, len(domains))
	for n := range domains {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := domains[n]
		sort.Strings(d.ops)
		ops := d.ops
		if len(ops) > 20 {
			ops = append(ops[:20:20], fmt.Sprintf("and %d more", len(d.ops)-20))
		}
		sev, why := finding.Medium, "a custom operator library (native code) must be loaded to run the model"
		if runtimeDomains[n] {
			sev, why = finding.Low, "operators built into a common runtime, not the ONNX standard"
		}
		env.Report(finding.Finding{Rule: RuleCustomDomain, Severity: sev, Location: in.At(d.at),
			Message:  fmt.Sprintf("nodes use operator domain %q (%s): %s", n, strings.Join(ops, ", "), why),
			Evidence: map[string]string{"domain": n, "ops": strings.Join(ops, ",")}})
	}
}

// checkExternal judges each external data reference: by name always, and
// for a file on disk against the model's folder.
func checkExternal(in scan.Input, env *scan.Env, m *Model) {
	onDisk := in.Depth == 0 && in.Loc.Path != ""
	dir := filepath.Dir(in.Loc.Path)
	type resolved struct {
		size int64
		err  error
	}
	cache := map[string]resolved{}
	reported := map[string]bool{}
	once := func(rule, key string, f finding.Finding) {
		if reported[rule+"\x00"+key] {
			return
		}
		reported[rule+"\x00"+key] = true
		f.Rule = rule
		env.Report(f)
	}
	for _, ref := range m.External {
		ev := map[string]string{"tensor": ref.Tensor, "location": ref.Location}
		if why := pathcheck.Unsafe(ref.Location); why != "" {
			once(RuleExternalPath, ref.Location, finding.Finding{Severity: finding.High, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q keeps its data in %q: %s; a loader would read a file outside the model folder", ref.Tensor, ref.Location, why)})
			continue
		}
		if !onDisk {
			once(RuleExternalData, ref.Location, finding.Finding{Severity: finding.Info, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q keeps its data in %q, not checked: the model is inside a container", ref.Tensor, ref.Location)})
			continue
		}
		r, ok := cache[ref.Location]
		if !ok {
			_, size, err := pathcheck.Resolve(dir, ref.Location)
			r = resolved{size, err}
			cache[ref.Location] = r
		}
		switch {
		case errors.Is(r.err, pathcheck.ErrEscape):
			once(RuleExternalPath, ref.Location, finding.Finding{Severity: finding.High, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q keeps its data in %q, a symbolic link out of the model folder: %v", ref.Tensor, ref.Location, r.err)})
			continue
		case r.err != nil:
			once(RuleExternalMissing, ref.Location, finding.Finding{Severity: finding.Low, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q keeps its data in %q, which is not usable: %v", ref.Tensor, ref.Location, r.err)})
			continue
		}
		off, offErr := parseSize(ref.Offset, 0)
		length, lenErr := parseSize(ref.Length, r.size-min(off, r.size))
		switch {
		case offErr != nil || lenErr != nil:
			env.Report(finding.Finding{Rule: RuleExternalBounds, Severity: finding.Medium, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q: external data offset %q or length %q is not a non-negative integer", ref.Tensor, ref.Offset, ref.Length)})
		case off > r.size || length > r.size-off:
			ev["offset"], ev["length"], ev["file_size"] = ref.Offset, ref.Length, strconv.FormatInt(r.size, 10)
			env.Report(finding.Finding{Rule: RuleExternalBounds, Severity: finding.Medium, Location: in.At(ref.At), Evidence: ev,
				Message: fmt.Sprintf("tensor %q: external data [%d,+%d) runs past the end of %q (%d bytes)", ref.Tensor, off, length, ref.Location, r.size)})
		}
	}
	if m.MoreExternal > 0 {
		env.Report(finding.Finding{Rule: RuleExternalData, Severity: finding.Low, Location: in.At(-1),
			Message: fmt.Sprintf("%d more external data references were not checked", m.MoreExternal)})
	}
}

// parseSize parses an external data offset or length; empty means def.
func parseSize(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err == nil && v < 0 {
		return 0, fmt.Errorf("negative size %d", v)
	}
	return v, err
}
