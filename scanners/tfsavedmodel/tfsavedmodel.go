// Package tfsavedmodel scans TensorFlow SavedModel protobufs without
// loading them: saved_model.pb (SavedModel → meta_graphs → graph_def nodes
// and the function library's node_defs) for ops that reach the file system,
// run Python or load libraries, and keras_metadata.pb (the Keras objects of
// a tf.keras SavedModel), whose JSON metadata goes through the Keras config
// checker. Both are decoded with protowire, field by field, reading only
// the fields needed, through a small window over the stream.
//
// Field numbers: saved_model.proto (SavedModel: schema version 1,
// meta_graphs 2), meta_graph.proto (MetaGraphDef: meta_info_def 1,
// graph_def 2; MetaInfoDef: tags 4, tensorflow_version 5), graph.proto
// (GraphDef: node 1, library 2), function.proto (FunctionDefLibrary:
// function 1; FunctionDef: node_def 3), node_def.proto (NodeDef: name 1,
// op 2, input 3, attr 5), attr_value.proto (AttrValue: s 2, tensor 8),
// tensor.proto (TensorProto: dtype 1, string_val 8), keras
// saved_metadata.proto (SavedMetadata: nodes 1; SavedObject: node_id 2,
// node_path 3, identifier 4, metadata 5).
package tfsavedmodel

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Rule ids of the SavedModel scanner.
const (
	RulePythonOp  = "tf/python-op"
	RuleFileOp    = "tf/file-op"
	RuleLibraryOp = "tf/library-op"
	RuleSaverOp   = "tf/saver-op"
	RuleCustomOp  = "tf/custom-op"
)

// Limits.
const (
	maxNodes     = 10_000_000 // nodes walked in one file
	maxOpsMeta   = 500        // distinct ops recorded in tf.ops
	maxHits      = 500        // findings per file
	maxConsts    = 100_000    // string constants remembered for saver paths
	maxConstLen  = 4096       // bytes of a string constant remembered
	maxAttrBytes = 1 << 16    // bytes of a string attribute read
)

// opRule grades an op by name.
type opRule struct {
	rule string
	sev  finding.Severity
	why  string
}

// ops are the ops flagged wherever they appear.
var ops = map[string]opRule{
	"PyFunc":             {RulePythonOp, finding.Critical, "calls a Python function registered in the loading process (tf.py_func): code outside the graph runs"},
	"PyFuncStateless":    {RulePythonOp, finding.Critical, "calls a Python function registered in the loading process"},
	"EagerPyFunc":        {RulePythonOp, finding.Critical, "calls a Python function registered in the loading process (tf.py_function)"},
	"ReadFile":           {RuleFileOp, finding.High, "reads any file the graph names"},
	"WriteFile":          {RuleFileOp, finding.High, "writes any file the graph names"},
	"MatchingFiles":      {RuleFileOp, finding.High, "lists files matching a pattern"},
	"DeleteFile":         {RuleFileOp, finding.High, "deletes files"},
	"ImmutableConst":     {RuleFileOp, finding.Medium, "memory-maps a file named in its attributes"},
	"LoadLibrary":        {RuleLibraryOp, finding.Critical, "loads a native library"},
	"LoadOpLibrary":      {RuleLibraryOp, finding.Critical, "loads a native library"},
	"LoadPlugin":         {RuleLibraryOp, finding.Critical, "loads a native library"},
	"Save":               {RuleSaverOp, finding.Info, "writes a checkpoint"},
	"SaveV2":             {RuleSaverOp, finding.Info, "writes a checkpoint"},
	"SaveSlices":         {RuleSaverOp, finding.Info, "writes a checkpoint"},
	"Restore":            {RuleSaverOp, finding.Info, "reads a checkpoint"},
	"RestoreV2":          {RuleSaverOp, finding.Info, "reads a checkpoint"},
	"RestoreSlice":       {RuleSaverOp, finding.Info, "reads a checkpoint"},
	"MergeV2Checkpoints": {RuleSaverOp, finding.Info, "merges checkpoint files"},
}

// printStreams are PrintV2 output streams that are not files.
var printStreams = map[string]bool{"": true, "stderr": true, "stdout": true, "log(info)": true, "log(warning)": true, "log(error)": true}

// Scanner is the scan.Scanner for saved_model.pb.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "tf-savedmodel" }

// Match implements scan.Scanner: an optional saved_model_schema_version
// varint (field 1) followed by a meta_graphs message (field 2) whose first
// tag is a MetaGraphDef field (1 to 7, length-delimited). ONNX models also
// begin with field 1 varint and field 2 bytes (producer_name); Scan returns
// scan.ErrNotFormat for them.
func (Scanner) Match(head []byte, size int64) bool {
	b := head
	if len(b) > 0 && b[0] == 0x08 {
		_, n := protowire.ConsumeVarint(b[1:])
		if n < 0 {
			return false
		}
		b = b[1+n:]
	}
	if len(b) < 3 || b[0] != 0x12 {
		return false
	}
	l, n := protowire.ConsumeVarint(b[1:])
	if n < 0 || l == 0 || l > uint64(size) {
		return false
	}
	t := b[1+n]
	return t&7 == 2 && t>>3 >= 1 && t>>3 <= 7
}

// walker holds the state of one file's walk.
type walker struct {
	s      *src
	in     scan.Input
	env    *scan.Env
	opSet  map[string]bool
	tags   []string
	vers   []string
	consts map[string]string // node name → string constant
	nodes  int
	hits   int
	savers []pendingSaver
}

type pendingSaver struct {
	op, name, input string
	off             int64
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	s := newSrc(in.R, in.Size, "tf-savedmodel")
	var metas []field
	if err := s.fields(0, in.Size, func(f field) error {
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
		case f.num == 2 && f.typ == protowire.BytesType:
			metas = append(metas, f)
		default:
			return scan.ErrNotFormat
		}
		return nil
	}); err != nil {
		return scan.ErrNotFormat
	}
	if len(metas) == 0 {
		return scan.ErrNotFormat
	}
	for _, m := range metas {
		if !isMetaGraph(s, m) {
			return scan.ErrNotFormat
		}
	}
	w := &walker{s: s, in: in, env: env, opSet: map[string]bool{}, consts: map[string]string{}}
	var err error
	for _, m := range metas {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = w.metaGraph(ctx, m); err != nil {
			break
		}
	}
	w.finishSavers()
	w.meta()
	return err
}

// isMetaGraph checks that f holds a MetaGraphDef: only fields 1 to 7, all
// length-delimited, with a meta_info_def or a graph_def.
func isMetaGraph(s *src, f field) bool {
	core := false
	err := s.fields(f.at, f.at+f.n, func(g field) error {
		if g.num < 1 || g.num > 7 || g.typ != protowire.BytesType {
			return scan.ErrNotFormat
		}
		if g.num <= 2 {
			core = true
		}
		return nil
	})
	return err == nil && core
}

func (w *walker) metaGraph(ctx context.Context, m field) error {
	return w.s.fields(m.at, m.at+m.n, func(f field) error {
		switch f.num {
		case 1: // meta_info_def
			return w.s.fields(f.at, f.at+f.n, func(g field) error {
				if g.typ != protowire.BytesType {
					return nil
				}
				switch g.num {
				case 4:
					t, err := w.s.str(g, 256)
					if err == nil && len(w.tags) < 64 {
						w.tags = append(w.tags, t)
					}
					return err
				case 5:
					v, err := w.s.str(g, 256)
					if err == nil && v != "" {
						w.vers = append(w.vers, v)
					}
					return err
				}
				return nil
			})
		case 2: // graph_def
			return w.graph(ctx, f)
		}
		return nil
	})
}

func (w *walker) graph(ctx context.Context, g field) error {
	return w.s.fields(g.at, g.at+g.n, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case 1:
			return w.node(f, "")
		case 2: // library
			return w.s.fields(f.at, f.at+f.n, func(l field) error {
				if l.num != 1 || l.typ != protowire.BytesType {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				name := ""
				// FunctionDef: signature (OpDef name 1) and node_def 3.
				return w.s.fields(l.at, l.at+l.n, func(fd field) error {
					if fd.typ != protowire.BytesType {
						return nil
					}
					switch fd.num {
					case 1:
						_ = w.s.fields(fd.at, fd.at+fd.n, func(o field) error {
							if o.num == 1 && o.typ == protowire.BytesType {
								name, _ = w.s.str(o, 512)
							}
							return nil
						})
					case 3:
						return w.node(fd, name)
					}
					return nil
				})
			})
		}
		return nil
	})
}

// node reads one NodeDef; fn names the library function holding it.
func (w *walker) node(f field, fn string) error {
	if w.nodes++; w.nodes > maxNodes {
		return w.s.fail(f.off, fmt.Sprintf("more than %d nodes", maxNodes), nil)
	}
	var name, op, input0, stream string
	var attrs []field
	err := w.s.fields(f.at, f.at+f.n, func(g field) error {
		if g.typ != protowire.BytesType {
			return nil
		}
		var err error
		switch g.num {
		case 1:
			name, err = w.s.str(g, 1024)
		case 2:
			op, err = w.s.str(g, 1024)
		case 3:
			if input0 == "" {
				input0, err = w.s.str(g, 1024)
			}
		case 5:
			attrs = append(attrs, g)
		}
		return err
	})
	if err != nil {
		return err
	}
	if op == "" {
		return nil
	}
	if len(w.opSet) < 100_000 {
		w.opSet[op] = true
	}
	where := name
	if fn != "" {
		where = fn + "/" + name
	}
	switch {
	case op == "Const":
		return w.constant(name, attrs)
	case op == "PrintV2":
		for _, a := range attrs {
			k, v, err := w.attr(a)
			if err != nil {
				return err
			}
			if k == "output_stream" {
				stream = v
			}
		}
		if !printStreams[stream] {
			w.report(RuleFileOp, finding.High, f.off, fmt.Sprintf("node %q (PrintV2) prints to %q, a file: running the graph appends to it", where, stream), op, map[string]string{"output_stream": stream})
		}
		return nil
	}
	r, ok := ops[op]
	if !ok {
		if strings.Contains(op, ">") {
			// TensorFlow's own ops are never namespaced; "Addons>GeluImpl"
			// style names come from custom op libraries (native .so code
			// that tf.load_op_library must load before the graph runs).
			w.report(RuleCustomOp, finding.Medium, f.off, fmt.Sprintf("node %q uses op %s, a namespaced custom op: its native library must be loaded to run the graph", where, op), op, nil)
		}
		return nil
	}
	if r.rule == RuleSaverOp {
		w.savers = append(w.savers, pendingSaver{op: op, name: where, input: input0, off: f.off})
		return nil
	}
	w.report(r.rule, r.sev, f.off, fmt.Sprintf("node %q uses op %s, which %s", where, op, r.why), op, nil)
	return nil
}

// attr reads a NodeDef attr map entry as key and string value (AttrValue.s).
func (w *walker) attr(a field) (string, string, error) {
	var k, v string
	err := w.s.fields(a.at, a.at+a.n, func(e field) error {
		if e.typ != protowire.BytesType {
			return nil
		}
		var err error
		switch e.num {
		case 1:
			k, err = w.s.str(e, 256)
		case 2:
			err = w.s.fields(e.at, e.at+e.n, func(av field) error {
				if av.num == 2 && av.typ == protowire.BytesType {
					var err error
					v, err = w.s.str(av, maxAttrBytes)
					return err
				}
				return nil
			})
		}
		return err
	})
	return k, v, err
}

// constant remembers a string Const's first value (AttrValue.tensor 8 →
// TensorProto.string_val 8) for the saver path check.
func (w *walker) constant(name string, attrs []field) error {
	if len(w.consts) >= maxConsts {
		return nil
	}
	for _, a := range attrs {
		var key string
		var val field
		if err := w.s.fields(a.at, a.at+a.n, func(e field) error {
			if e.typ == protowire.BytesType {
				switch e.num {
				case 1:
					var err error
					key, err = w.s.str(e, 64)
					return err
				case 2:
					val = e
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if key != "value" || val.n == 0 {
			continue
		}
		return w.s.fields(val.at, val.at+val.n, func(av field) error {
			if av.num != 8 || av.typ != protowire.BytesType {
				return nil
			}
			return w.s.fields(av.at, av.at+av.n, func(t field) error {
				if t.num == 8 && t.typ == protowire.BytesType {
					if _, seen := w.consts[name]; !seen {
						s, err := w.s.str(t, maxConstLen)
						if err != nil {
							return err
						}
						w.consts[name] = s
					}
				}
				return nil
			})
		})
	}
	return nil
}

// finishSavers reports checkpoint ops: info, or medium when a constant
// feeding their file name is absolute or climbs with "..".
func (w *walker) finishSavers() {
	counts := map[string]int{}
	for _, sv := range w.savers {
		in := strings.TrimPrefix(sv.input, "^")
		if i := strings.IndexByte(in, ':'); i >= 0 {
			in = in[:i]
		}
		path, ok := w.consts[in]
		if ok && (strings.HasPrefix(path, "/") || strings.Contains(path, "..") || strings.Contains(path, "://") || len(path) > 2 && path[1] == ':') {
			w.report(RuleSaverOp, finding.Medium, sv.off, fmt.Sprintf("node %q (%s) uses the fixed file name %q, outside the model folder: running the graph touches it", sv.name, sv.op, path), sv.op, map[string]string{"path": path})
			continue
		}
		counts[sv.op]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, op := range keys {
		w.report(RuleSaverOp, finding.Info, -1, fmt.Sprintf("%d %s node(s): checkpoint ops of the graph's saver, with no fixed path outside the model", counts[op], op), op, nil)
	}
}

func (w *walker) report(rule string, sev finding.Severity, off int64, msg, op string, ev map[string]string) {
	if w.hits++; w.hits > maxHits {
		return
	}
	if ev == nil {
		ev = map[string]string{}
	}
	ev["op"] = op
	w.env.Report(finding.Finding{Rule: rule, Severity: sev, Location: w.in.At(off), Message: msg, Evidence: ev})
}

func (w *walker) meta() {
	list := make([]string, 0, len(w.opSet))
	for op := range w.opSet {
		list = append(list, op)
	}
	sort.Strings(list)
	if len(list) > maxOpsMeta {
		list = list[:maxOpsMeta]
	}
	w.env.SetMeta(w.in, "tf.ops", list)
	w.env.SetMeta(w.in, "tf.nodes", w.nodes)
	if len(w.tags) > 0 {
		w.env.SetMeta(w.in, "tf.tags", w.tags)
	}
	if len(w.vers) > 0 {
		w.env.SetMeta(w.in, "tf.version", w.vers[0])
	}
	if w.hits > maxHits {
		w.env.Report(finding.Finding{Rule: RuleFileOp, Severity: finding.Info, Location: w.in.At(-1), Message: fmt.Sprintf("%d more SavedModel findings not listed", w.hits-maxHits)})
	}
}
