package keras

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
)

// Rule ids of the Keras checks.
const (
	RuleLambda       = "keras/lambda"
	RuleTFOpLambda   = "keras/tfoplambda"
	RuleUnsafeModule = "keras/unsafe-module"
	RuleKerasFunc    = "keras/dangerous-function"
	RuleCustomObject = "keras/custom-object"
	RuleFunctionRef  = "keras/function-reference"
	RuleFileRef      = "keras/file-reference"
	RuleDuplicateKey = "keras/duplicate-key"
	RuleEncoding     = "keras/unusual-encoding"
	RuleTruncated    = "keras/truncated"
)

// maxHits bounds the findings one config yields.
const maxHits = 200

// kerasModules are the module prefixes whose objects Keras resolves through
// its own API table or that the Keras team ships as registered
// serializables: Keras 3 itself (keras, keras.src.*), its domain packages
// (keras_hub, formerly keras_nlp, and keras_cv; keras_rs, keras_tuner), and
// Keras 2 as tf.keras or the tf_keras package. Objects from these modules
// are judged by name (keras.utils.get_file is not safe); anything else is a
// Python import that Keras performs with importlib and is judged by the
// policy, as the pickle scanner judges a global.
var kerasModules = []string{"keras", "keras_hub", "keras_nlp", "keras_cv", "keras_rs", "keras_tuner", "tf_keras", "tensorflow.keras", "tensorflow.python.keras"}

// kerasDanger are names inside the Keras namespace that a config must not
// reach: the safe_mode bypasses reported as CVE-2025-8747 (get_file writes
// a download anywhere), CVE-2025-9906 (enable_unsafe_deserialization turns
// safe_mode off before a Lambda is loaded) and helpers that load code or
// other files.
var kerasDanger = map[string]struct {
	sev finding.Severity
	why string
}{
	"enable_unsafe_deserialization": {finding.Critical, "turns safe_mode off for the rest of the load, so a later Lambda runs (CVE-2025-9906)"},
	"func_load":                     {finding.Critical, "unmarshals Python bytecode and runs it"},
	"get_file":                      {finding.High, "downloads a URL and writes it to a path the config chooses (CVE-2025-8747)"},
	"load_model":                    {finding.High, "loads another model file, whose own config is not checked here"},
	"load_weights":                  {finding.Medium, "reads another file from a path in the config"},
	"model_from_json":               {finding.High, "deserializes another config, with its own safe_mode"},
	"model_from_yaml":               {finding.High, "deserializes YAML config"},
	"deserialize_keras_object":      {finding.High, "deserializes a nested config"},
	"load_img":                      {finding.Medium, "reads a file from a path in the config"},
}

// tfDanger grades TensorFlow API names a TFOpLambda layer calls (its
// config's "function", e.g. "math.add"), matched as prefixes.
var tfDanger = []struct {
	prefix string
	sev    finding.Severity
	why    string
}{
	{"py_function", finding.Critical, "runs a Python callable"},
	{"numpy_function", finding.Critical, "runs a Python callable"},
	{"py_func", finding.Critical, "runs a Python callable"},
	{"compat.v1.py_func", finding.Critical, "runs a Python callable"},
	{"load_op_library", finding.Critical, "loads a native library"},
	{"load_library", finding.Critical, "loads a native library"},
	{"raw_ops.PyFunc", finding.Critical, "runs a Python callable"},
	{"raw_ops.EagerPyFunc", finding.Critical, "runs a Python callable"},
	{"raw_ops.ReadFile", finding.High, "reads a file"},
	{"raw_ops.WriteFile", finding.High, "writes a file"},
	{"raw_ops.MatchingFiles", finding.High, "lists files"},
	{"io.", finding.High, "reads or writes files"},
	{"compat.v1.gfile", finding.High, "reads or writes files"},
	{"compat.v1.io", finding.High, "reads or writes files"},
	{"gfile", finding.High, "reads or writes files"},
	{"print", finding.Medium, "prints, possibly to a file"},
	{"summary.", finding.Medium, "writes summary files"},
	{"saved_model.", finding.High, "loads or saves models"},
	{"train.", finding.Medium, "reads or writes checkpoints"},
	{"data.experimental.save", finding.High, "writes files"},
	{"data.experimental.load", finding.Medium, "reads files"},
}

// Hit is one thing the checker saw in a config.
type Hit struct {
	Rule     string
	Severity finding.Severity
	// Off is the byte offset in the JSON document (-1 when unknown).
	Off      int64
	Message  string
	Global   string
	Evidence map[string]string
}

// Config is the result of checking one Keras config document.
type Config struct {
	// Hits are the findings, in document order.
	Hits []Hit
	// Truncated counts hits past the limit that were dropped.
	Truncated int
	// ClassName is the top-level object's class_name ("Sequential").
	ClassName string
	// Layers counts layer configs (objects in "layers" arrays).
	Layers int
	// KerasVersion and Backend are read from the top level when present.
	KerasVersion, Backend string
}

// IsKerasModule reports whether module is in the Keras namespace.
func IsKerasModule(module string) bool {
	for _, m := range kerasModules {
		if module == m || strings.HasPrefix(module, m+".") {
			return true
		}
	}
	return false
}

// isKerasRegistered reports whether a registered_name belongs to Keras or
// its own packages: a plain name, or "package>name" with a Keras package.
func isKerasRegistered(reg, className string) bool {
	pkg, _, ok := strings.Cut(reg, ">")
	if !ok {
		return true // Keras records built-ins by plain name ("MetricsList", "relu")
	}
	return IsKerasModule(pkg)
}

// checker walks a config tree.
type checker struct {
	pol   *policy.Policy
	cfg   *Config
	done  map[int64]bool // offsets of nodes already reported (a Lambda's function)
	limit int
}

// CheckJSON parses doc (a Keras config in any encoding Python's json module
// reads) and checks it. It returns an error for text that is not JSON.
func CheckJSON(doc []byte, pol *policy.Policy) (*Config, error) {
	if len(doc) > MaxConfigSize {
		return nil, fmt.Errorf("keras: config of %d bytes exceeds the %d-byte limit", len(doc), MaxConfigSize)
	}
	text, _, enc, _ := toUTF8(doc)
	root, dups, err := parseJSON(text)
	if err != nil {
		return nil, err
	}
	cfg := Check(root, pol)
	if enc != "utf-8" && enc != "utf-8-sig" {
		cfg.add(Hit{Rule: RuleEncoding, Severity: finding.Low, Off: 0,
			Message: "config is encoded as " + enc + "; Python's json module reads it, many tools do not"}, maxHits)
	}
	for _, d := range dups {
		cfg.add(Hit{Rule: RuleDuplicateKey, Severity: finding.Low, Off: d.off,
			Message: fmt.Sprintf("key %q repeats in one object: Python keeps the last value, other parsers the first (both were checked)", d.key)}, maxHits)
	}
	return cfg, nil
}

// Check judges a parsed config tree.
func Check(root *node, pol *policy.Policy) *Config {
	if pol == nil {
		pol = policy.Default()
	}
	cfg := &Config{}
	c := &checker{pol: pol, cfg: cfg, done: map[int64]bool{}, limit: maxHits}
	if root.kind == kObject {
		cfg.ClassName, _ = root.getStr("class_name")
		cfg.KerasVersion, _ = root.getStr("keras_version")
		cfg.Backend, _ = root.getStr("backend")
	}
	c.walk(root, "", "")
	return cfg
}

func (cfg *Config) add(h Hit, limit int) {
	if len(cfg.Hits) >= limit {
		cfg.Truncated++
		return
	}
	cfg.Hits = append(cfg.Hits, h)
}

func (c *checker) hit(h Hit) { c.cfg.add(h, c.limit) }

// walk visits n; key is the member name n is the value of, and owner the
// class_name of the object holding it.
func (c *checker) walk(n *node, key, owner string) {
	switch n.kind {
	case kArray:
		if key == "layers" {
			for i := range n.kids {
				if _, ok := n.kids[i].getStr("class_name"); ok {
					c.cfg.Layers++
				}
			}
		}
		for i := range n.kids {
			c.walk(&n.kids[i], key, owner)
		}
	case kObject:
		cls, hasClass := n.getStr("class_name")
		if hasClass {
			c.object(n, cls)
		}
		for i := 0; i+1 < len(n.kids); i += 2 {
			k := n.kids[i].str
			v := &n.kids[i+1]
			if v.kind == kString {
				c.stringMember(k, v, cls)
			}
			c.walk(v, k, cls)
		}
	}
}

// stringMember checks string values that name code or files.
func (c *checker) stringMember(key string, v *node, owner string) {
	switch key {
	case "function", "fn":
		if owner == "Lambda" || owner == "TFOpLambda" || owner == "SlicingOpLambda" || c.done[v.off] {
			return // judged with the layer
		}
		i := strings.LastIndex(v.str, ".")
		if i <= 0 {
			return // a plain name ("mean_squared_error") Keras looks up in its own tables
		}
		c.reference(v.off, v.str[:i], v.str[i+1:], RuleFunctionRef, fmt.Sprintf("%q names the Python function %s", key, v.str))
	case "vocabulary", "vocabulary_file", "filepath", "merges":
		if s := v.str; strings.HasPrefix(s, "/") || strings.HasPrefix(s, "~") || strings.Contains(s, "..") ||
			strings.Contains(s, "://") || strings.HasPrefix(s, `\\`) || len(s) > 2 && s[1] == ':' && (s[2] == '\\' || s[2] == '/') {
			c.hit(Hit{Rule: RuleFileRef, Severity: finding.High, Off: v.off,
				Message:  fmt.Sprintf("%q of %s names a file or URL outside the model (%q): loading the model reads it (arbitrary file read / SSRF)", key, orDash(owner), s),
				Evidence: map[string]string{"path": s}})
		}
	}
}

// reference judges module.name as a Python import: by name in the Keras
// namespace, by the policy elsewhere.
func (c *checker) reference(off int64, module, name, rule, what string) {
	if IsKerasModule(module) {
		if d, ok := kerasDanger[name]; ok {
			c.hit(Hit{Rule: RuleKerasFunc, Severity: d.sev, Off: off, Global: module + "." + name,
				Message: fmt.Sprintf("%s, a Keras function that %s", what, d.why)})
		}
		return
	}
	v := c.pol.Global(module, name)
	if v.Safe {
		return
	}
	c.hit(Hit{Rule: rule, Severity: v.Severity, Off: off, Global: v.Canonical,
		Message:  fmt.Sprintf("%s: Keras imports it with importlib while loading; %s", what, v.Reason),
		Evidence: map[string]string{"module": module, "name": name}})
}

// object judges one serialized object {class_name, config, module,
// registered_name}.
func (c *checker) object(n *node, cls string) {
	conf := n.get("config")
	module, hasModule := n.getStr("module")
	reg, _ := n.getStr("registered_name")
	name, _ := conf.getStr("name")
	label := cls
	if name != "" {
		label = fmt.Sprintf("%s %q", cls, name)
	}
	switch cls {
	case "Lambda":
		c.lambda(n, conf, label)
		return
	case "__lambda__":
		if !c.done[n.off] {
			c.done[n.off] = true
			c.hit(c.bytecodeHit(n.off, "serialized Python lambda", conf.get("value")))
		}
		return
	case "TFOpLambda", "SlicingOpLambda":
		fn, _ := conf.getStr("function")
		h := Hit{Rule: RuleTFOpLambda, Severity: finding.High, Off: n.off,
			Message:  fmt.Sprintf("%s calls the TensorFlow function tf.%s by name when loaded; TFOpLambda resolves any tf.* symbol", label, fn),
			Evidence: map[string]string{"function": fn}}
		for _, d := range tfDanger {
			if strings.HasPrefix(fn, d.prefix) {
				h.Severity = max(h.Severity, d.sev)
				h.Message += "; tf." + fn + " " + d.why
				break
			}
		}
		c.hit(h)
		return
	}
	if hasModule {
		fnName := cls
		switch cls {
		case "function":
			if s, ok := conf.getStr("config"); ok {
				fnName = s
			} else if conf != nil && conf.kind == kString {
				fnName = conf.str
			}
		case "__typespec__":
			fnName, _ = n.getStr("spec_name")
		}
		if IsKerasModule(module) {
			for _, nm := range []string{fnName, reg} {
				if d, ok := kerasDanger[nm]; ok {
					c.hit(Hit{Rule: RuleKerasFunc, Severity: d.sev, Off: n.off, Global: module + "." + nm,
						Message: fmt.Sprintf("%s refers to %s.%s, a Keras function that %s", label, module, nm, d.why)})
					return
				}
			}
		} else if cls == "__typespec__" && strings.HasPrefix(module, "tensorflow.python.framework.") && strings.HasSuffix(fnName, "Spec") {
			return // tf.TensorSpec and friends, written by Keras for TensorFlow inputs
		} else {
			// Keras imports the module and takes the attribute named by
			// class_name (or the function name), else by registered_name.
			best := c.pol.Global(module, fnName)
			if reg != "" && reg != fnName && !strings.Contains(reg, ">") {
				if v := c.pol.Global(module, reg); !v.Safe && (best.Safe || v.Severity > best.Severity) {
					best = v
				}
			}
			if best.Safe {
				return
			}
			c.hit(Hit{Rule: RuleUnsafeModule, Severity: best.Severity, Off: n.off, Global: best.Canonical,
				Message:  fmt.Sprintf("%s comes from module %q, outside Keras: the loader imports it and calls %s (CVE-2025-1550); %s", label, module, best.Canonical, best.Reason),
				Evidence: map[string]string{"module": module, "class_name": cls, "registered_name": reg}})
			return
		}
	}
	if reg != "" && !isKerasRegistered(reg, cls) {
		c.hit(Hit{Rule: RuleCustomObject, Severity: finding.Medium, Off: n.off,
			Message:  fmt.Sprintf("%s is a custom object registered as %q outside Keras: it loads only with code the loader registers, which runs with the config's arguments", label, reg),
			Evidence: map[string]string{"registered_name": reg}})
		return
	}
	if pkg, _, ok := strings.Cut(cls, ">"); ok && !IsKerasModule(pkg) {
		c.hit(Hit{Rule: RuleCustomObject, Severity: finding.Medium, Off: n.off,
			Message: fmt.Sprintf("class_name %q is a custom registered object outside Keras", cls)})
	}
}

// lambda reports a Lambda layer and what its function is.
func (c *checker) lambda(n, conf *node, label string) {
	fn := conf.get("function")
	h := Hit{Rule: RuleLambda, Severity: finding.Critical, Off: n.off}
	switch {
	case fn == nil:
		h.Message = label + " layer without a function"
	case fn.kind == kArray || fn.kind == kString && conf.getStrOr("function_type") == "lambda":
		// Keras 2: ["<base64 marshal>", defaults, closure] or the bare code.
		var code *node = fn
		if fn.kind == kArray && len(fn.kids) > 0 {
			code = &fn.kids[0]
		}
		h = c.bytecodeHit(n.off, label+" layer", code)
	case fn.kind == kObject:
		cls, _ := fn.getStr("class_name")
		c.done[fn.off] = true
		if cls == "__lambda__" {
			h = c.bytecodeHit(n.off, label+" layer", fn.get("config").get("value"))
			break
		}
		mod, _ := fn.getStr("module")
		name, _ := fn.getStr("config")
		h.Message, h.Global = c.refMessage(label, mod, name)
	case fn.kind == kString:
		// Keras 2 function_type "function": a name in config["module"].
		mod := conf.getStrOr("module")
		h.Message, h.Global = c.refMessage(label, mod, fn.str)
		c.done[fn.off] = true
	default:
		h.Message = label + " layer with a function Keras deserializes on load"
	}
	h.Rule, h.Severity, h.Off = RuleLambda, finding.Critical, n.off
	c.hit(h)
}

func (n *node) getStrOr(key string) string {
	s, _ := n.getStr(key)
	return s
}

// refMessage describes a Lambda whose function is module.name.
func (c *checker) refMessage(label, mod, name string) (string, string) {
	global := name
	if mod != "" {
		global = mod + "." + name
	}
	msg := fmt.Sprintf("%s layer calls the Python function %s, imported by module and name when the model loads (CVE-2024-3660 family)", label, global)
	if mod != "" && !IsKerasModule(mod) {
		if v := c.pol.Global(mod, name); !v.Safe && v.Matched != "" {
			msg += "; " + v.Canonical + ": " + v.Reason
			global = v.Canonical
		}
	}
	return msg, global
}

// bytecodeHit describes marshalled bytecode: its size and the names in it.
func (c *checker) bytecodeHit(off int64, what string, code *node) Hit {
	h := Hit{Rule: RuleLambda, Severity: finding.Critical, Off: off, Evidence: map[string]string{}}
	if code != nil && code.kind == kArray && len(code.kids) > 0 {
		code = &code.kids[0] // Keras 3 __lambda__ value: [code, defaults, closure]
	}
	if code == nil || code.kind != kString {
		h.Message = what + " carries a Python function Keras rebuilds with marshal.loads when loaded (CVE-2024-3660)"
		return h
	}
	raw, err := decodeB64(code.str)
	if err != nil {
		h.Message = what + " carries a function that is not valid base64 marshal data; Keras would try to unmarshal it (CVE-2024-3660)"
		return h
	}
	names := MarshalNames(raw, 40)
	h.Evidence["bytecode_bytes"] = strconv.Itoa(len(raw))
	if len(names) > 0 {
		h.Evidence["names"] = strings.Join(names, ",")
	}
	h.Message = fmt.Sprintf("%s carries marshalled Python bytecode (%d bytes) that runs when the model loads with safe_mode off, and always from .h5 (CVE-2024-3660, CVE-2025-9905)", what, len(raw))
	var bad []string
	for _, nm := range names {
		if dangerousNames[nm] {
			bad = append(bad, nm)
		}
	}
	if len(bad) > 0 {
		h.Message += "; it names " + strings.Join(bad, ", ")
	}
	return h
}

// dangerousNames are identifiers whose presence in lambda bytecode is worth
// quoting in the message.
var dangerousNames = map[string]bool{
	"os": true, "system": true, "popen": true, "subprocess": true, "eval": true, "exec": true,
	"__import__": true, "compile": true, "open": true, "getattr": true, "builtins": true,
	"socket": true, "urllib": true, "requests": true, "Popen": true, "run": true, "spawn": true,
	"execve": true, "remove": true, "rmtree": true, "shutil": true, "importlib": true,
}

// MarshalNames lists identifier-like strings in Python marshal data (a code
// object's names, variable names and string constants), sorted, at most
// limit. It reads the string records of every marshal version without
// executing anything; unknown bytes are skipped.
func MarshalNames(b []byte, limit int) []string {
	seen := map[string]bool{}
	for i := 0; i < len(b); i++ {
		t := b[i] &^ 0x80 // FLAG_REF
		var n, hdr int
		switch t {
		case 'z', 'Z': // short ASCII
			if i+1 >= len(b) {
				continue
			}
			n, hdr = int(b[i+1]), 2
		case 'a', 'A', 'u', 't', 's':
			if i+4 >= len(b) {
				continue
			}
			n, hdr = int(uint32(b[i+1])|uint32(b[i+2])<<8|uint32(b[i+3])<<16|uint32(b[i+4])<<24), 5
		default:
			continue
		}
		if n < 2 || n > 256 || i+hdr+n > len(b) {
			continue
		}
		s := string(b[i+hdr : i+hdr+n])
		if isIdent(s) {
			seen[s] = true
			i += hdr + n - 1
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func isIdent(s string) bool {
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case (r >= '0' && r <= '9' || r == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

func orDash(s string) string {
	if s == "" {
		return "an object"
	}
	return s
}

// decodeB64 decodes the MIME base64 (76-column lines) that Keras's
// func_dump writes with codecs.encode(code, "base64").
func decodeB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' {
			return -1
		}
		return r
	}, s))
}
