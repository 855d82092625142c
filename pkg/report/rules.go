package report

// ruleDescriptions documents every rule id modelseal emits. Scanners add
// their rules here; README.md lists the same table.
var ruleDescriptions = map[string]string{
	"pickle/dangerous-global":          "A pickle imports a global on the deny list: loading it can run code, reach files or the network.",
	"pickle/unsafe-global":             "A pickle imports a global that is not on the allowlist: loading it runs code modelseal cannot vouch for.",
	"pickle/unresolved-global":         "A pickle builds an import from values the scanner cannot resolve to constant strings: treated as dangerous.",
	"pickle/module-overwrite":          "A pickle changes attributes of a module or class object (BUILD on a global), which redirects later imports.",
	"pickle/nested-pickle":             "A pickle hands bytes to an unpickler (pickle.loads and friends); the inner pickle is scanned too.",
	"pickle/frame-mismatch":            "A protocol-4 FRAME length disagrees with the opcodes that follow, a trick that hides opcodes from some parsers.",
	"pickle/truncated":                 "The pickle stream ends before STOP; a loader runs every opcode before the break.",
	"pickle/trailing-data":             "Bytes after the last pickle that do not form another pickle.",
	"pickle/invalid-opcode":            "A byte that is not a pickle opcode, after opcodes a loader would already have run.",
	"pickle/unsupported-persistent-id": "A pickle uses persistent ids outside a known container; the loader decides what they mean.",
	"zip/flag-bits":                    "A zip member has general-purpose flag bits (encryption, patched data) that loaders ignore but other tools honour.",
	"zip/name-mismatch":                "A zip member's local header names a different file than the central directory.",
	"zip/crc-mismatch":                 "A zip member's data does not match its CRC-32.",
	"zip/duplicate-name":               "Two zip members share a name; tools disagree on which one is used.",
	"zip/unsafe-name":                  "A zip member name is absolute or climbs out of the extraction folder.",
	"zip/size-mismatch":                "A zip member's data is longer or shorter than its declared size; readers disagree on its contents.",
	"zip/encrypted":                    "A zip member is encrypted; its real contents could not be scanned.",
	"archive/unsafe-name":              "An archive member name is absolute or climbs out of the extraction folder.",
	"archive/encrypted":                "An archive member (or the whole archive) is encrypted; its contents could not be scanned.",
	"archive/link":                     "An archive member is a symbolic or hard link; extracting it can redirect later writes. Links are not followed.",
	"numpy/size-mismatch":              "A .npy file's data does not have the size its header's shape and dtype give: bytes are missing or hidden after the array.",
	"torch/storage-layout":             "A legacy PyTorch file's raw storage data does not fit the layout its pickles describe.",
	"torch/trailing-data":              "Bytes after a legacy PyTorch file's storage data, where torch.load never reads; a hidden pickle there is scanned too.",
	"archive/depth-limit":              "Containers nest deeper than the limit; the inner members were not scanned.",
	"archive/member-limit":             "A container has more members than the limit; the rest were not scanned.",
	"archive/expansion-limit":          "A container expands past the byte budget (decompression bomb?); the rest was not scanned.",
	"archive/compression-ratio":        "A member's compression ratio exceeds the limit (decompression bomb?); it was not scanned.",
	"fs/symlink-escape":                "A symbolic link in the model folder points outside it; a loader would follow it.",
	"hf/blob-mismatch":                 "A Hugging Face cache file's content does not match the hash its blob is named by (sha256 for LFS files, git blob SHA-1 for others).",
	"hf/not-a-blob-link":               "A Hugging Face cache snapshot holds a file that is not a link into the repository's blobs, so it did not come from the hub download.",
	"fs/broken-symlink":                "A symbolic link in the model folder does not resolve.",

	// scanners/keras
	"keras/lambda":                   "A Keras Lambda layer (or a serialized __lambda__) carries marshalled Python bytecode or names a Python function; loading runs it (CVE-2024-3660; .h5 files ignore safe_mode, CVE-2025-9905).",
	"keras/tfoplambda":               "A Keras TFOpLambda layer calls a TensorFlow function by name when loaded; file, Python-callback and library-loading functions are graded higher.",
	"keras/unsafe-module":            "A Keras config names an object from a module outside Keras; the loader imports the module and calls what the config names (CVE-2025-1550). Graded by the pickle global policy.",
	"keras/dangerous-function":       "A Keras config reaches a Keras function that defeats safe_mode or touches files (keras.utils.get_file CVE-2025-8747, enable_unsafe_deserialization CVE-2025-9906, func_load, load_model).",
	"keras/custom-object":            "A Keras config needs a custom object registered outside Keras: it loads only with code the loader registers, which then runs with the config's arguments.",
	"keras/function-reference":       "A Keras config's function or fn value names a Python function in a module outside Keras.",
	"keras/file-reference":           "A Keras config names an absolute, parent-relative or remote file (a lookup vocabulary, a filepath) that loading reads: arbitrary file read or SSRF.",
	"keras/duplicate-key":            "A Keras config repeats a key in one object: Python keeps the last value, other parsers the first (modelseal checks both).",
	"keras/unusual-encoding":         "A Keras config is UTF-16 or UTF-32 encoded: Python's json module reads it, many tools do not.",
	"keras/truncated":                "More Keras findings than the per-config limit; the rest are not listed.",
	"keras/h5-unreadable-attributes": "An HDF5 file keeps root attributes in storage modelseal does not read (dense fractal-heap attributes, shared messages): a model_config there was not checked.",

	// scanners/tfsavedmodel
	"tf/python-op":  "A TensorFlow graph uses PyFunc, PyFuncStateless or EagerPyFunc: running it calls Python code registered in the loading process.",
	"tf/file-op":    "A TensorFlow graph reads, writes, lists or deletes files (ReadFile, WriteFile, MatchingFiles, ImmutableConst, PrintV2 to a file).",
	"tf/library-op": "A TensorFlow graph uses an op that loads a native library.",
	"tf/saver-op":   "Checkpoint ops (Save/Restore/MergeV2Checkpoints): info for a graph's saver, medium when a constant file name is absolute or climbs with '..'.",
	"tf/custom-op":  "A SavedModel graph uses a namespaced custom op (\"Addons>GeluImpl\"): native code from an op library must be loaded to run it.",

	// scanners/safetensors
	"safetensors/invalid-header":         "A safetensors header breaks the format (dtype, shape, offsets, contiguity, metadata types, buffer size): the reference loader refuses it, and lenient parsers may read something else.",
	"safetensors/duplicate-key":          "A safetensors header repeats a key; JSON parsers disagree on which value counts, so two tools can see different tensors.",
	"safetensors/unknown-field":          "A safetensors tensor entry has a field the format does not define.",
	"safetensors/trailing-data":          "Bytes after the last safetensors tensor (a polyglot or appended payload); they are scanned as a member.",
	"safetensors/index-unsafe-path":      "A sharded-model index names a shard by an absolute path, with '..', or through a symbolic link out of the model folder.",
	"safetensors/index-missing-shard":    "A shard named by a sharded-model index is missing or not a regular file.",
	"safetensors/index-duplicate-tensor": "A tensor is listed twice in a sharded-model index, or stored in two shards: which copy a loader keeps depends on order.",
	"safetensors/index-mismatch":         "A sharded-model index and its shards' headers disagree on which tensors each shard holds.",

	// scanners/gguf, scanners/chattemplate
	"gguf/invalid-metadata":   "A GGUF metadata value has the wrong type or an invalid value (alignment, chat template), or a chat template too large to check.",
	"gguf/duplicate-key":      "A GGUF metadata key appears twice; loaders disagree on which value counts.",
	"gguf/invalid-tensor":     "A GGUF tensor info is invalid: unknown type, overflowing or misaligned shape, duplicate name, misaligned offset, data outside the file or overlapping another tensor.",
	"gguf/tensor-layout":      "GGUF tensors are not stored back to back in declaration order as llama.cpp requires; the gaps can hide data.",
	"gguf/trailing-data":      "Bytes after the last GGUF tensor, where no loader reads; they are scanned as a member.",
	"hfconfig/duplicate-key":  "A Hugging Face JSON config has chat_template twice; parsers disagree on which one counts.",
	"chat-template/injection": "A chat template (GGUF tokenizer.chat_template, tokenizer_config.json chat_template) uses constructs of server-side template injection: dunder or private attribute access, |attr, Jinja globals such as lipsum or cycler, code execution names.",

	// scanners/onnx
	"onnx/external-data-path":    "An ONNX tensor's external data location is absolute, climbs out with '..', holds a NUL, or is a symbolic link out of the model folder (CVE-2022-25882, CVE-2024-27318).",
	"onnx/external-data-missing": "An ONNX tensor's external data file is missing or not a regular file.",
	"onnx/external-data-bounds":  "An ONNX tensor's external data offset or length is not a valid size or runs past the end of its file.",
	"onnx/external-data":         "An ONNX model inside a container keeps tensor data in another file, which was not checked on disk.",
	"onnx/custom-domain":         "ONNX nodes use an operator domain outside the standard ones: a runtime's contrib operators (low) or a custom operator library, which is native code (medium).",
	"onnx/python-op":             "An ONNX node is a Python operator (PythonOp, PyOp): the runtime that registers it runs Python code.",
}

// RuleDescription returns the documented meaning of a rule id, or "".
func RuleDescription(id string) string { return ruleDescriptions[id] }
