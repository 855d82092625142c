package sbom

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"

	"github.com/modelseal/modelseal/pkg/modelfs"
)

// Limits of the PyTorch metadata reader.
const (
	// MaxTorchPickleSize bounds the data.pkl member that is unpickled.
	MaxTorchPickleSize = 64 << 20
	// maxPickleOps bounds the opcodes of that pickle.
	maxPickleOps = 4 << 20
	// maxWalk bounds the objects visited when counting tensors.
	maxWalk = 4 << 20
)

// TensorStats summarises the tensors of a checkpoint without reading them.
type TensorStats struct {
	// Tensors is the number of tensors in the pickled object.
	Tensors int
	// Parameters is the sum of their element counts.
	Parameters int64
	// DTypes are the storage dtypes seen ("float32", "bfloat16"), sorted.
	DTypes []string
}

// torchStorage is a storage class (torch.FloatStorage) the unpickler met.
type torchStorage struct{ dtype string }

// storageRef is what PersistentLoad returns instead of the storage's bytes.
type storageRef struct {
	dtype string
	key   string
	numel int
}

// tensorRef is a tensor rebuilt without data: its dtype and shape.
type tensorRef struct {
	dtype string
	shape []int
}

// rebuildTensor stands for torch._utils._rebuild_tensor_v2 (and v3): it
// records the dtype and shape instead of building a tensor.
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor: %d arguments", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, errors.New("_rebuild_tensor: the first argument is not a storage")
	}
	size, ok := args[2].(*types.Tuple)
	if !ok {
		return nil, errors.New("_rebuild_tensor: the size is not a tuple")
	}
	t := &tensorRef{dtype: st.dtype}
	for i := 0; i < size.Len(); i++ {
		d, ok := size.Get(i).(int)
		if !ok || d < 0 {
			return nil, errors.New("_rebuild_tensor: a dimension is not a non-negative int")
		}
		t.shape = append(t.shape, d)
	}
	return t, nil
}

// rebuildParameter stands for torch._utils._rebuild_parameter: a parameter
// is its tensor.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, errors.New("_rebuild_parameter: no arguments")
	}
	if _, ok := args[0].(*tensorRef); !ok {
		return nil, errors.New("_rebuild_parameter: the first argument is not a tensor")
	}
	return args[0], nil
}

var storageName = regexp.MustCompile(`^([A-Za-z0-9_]+)Storage$`)

// storageDTypes names the dtypes of torch's typed storage classes.
var storageDTypes = map[string]string{
	"Float": "float32", "Double": "float64", "Half": "float16", "BFloat16": "bfloat16",
	"Long": "int64", "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8",
	"Bool": "bool", "ComplexFloat": "complex64", "ComplexDouble": "complex128",
	"QInt8": "qint8", "QUInt8": "quint8", "QInt32": "qint32", "QUInt4x2": "quint4x2",
}

// findClass is the allowlist of the metadata unpickler: torch's tensor and
// parameter rebuild functions and typed storage classes. collections.OrderedDict
// is handled by gopickle itself. Anything else stops the unpickler.
func findClass(module, name string) (any, error) {
	switch module + "." + name {
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3":
		return rebuildTensor{}, nil
	case "torch._utils._rebuild_parameter":
		return rebuildParameter{}, nil
	}
	if module == "torch" {
		if m := storageName.FindStringSubmatch(name); m != nil {
			dt, ok := storageDTypes[m[1]]
			if !ok {
				dt = strings.ToLower(m[1])
			}
			return &torchStorage{dtype: dt}, nil
		}
	}
	return nil, fmt.Errorf("global %s.%s is not on the metadata allowlist", module, name)
}

// persistentLoad records a storage reference; the storage is never read.
func persistentLoad(id any) (any, error) {
	t, ok := id.(*types.Tuple)
	if !ok || t.Len() < 5 {
		return nil, errors.New("persistent id is not a storage tuple")
	}
	if s, _ := t.Get(0).(string); s != "storage" {
		return nil, errors.New("persistent id is not a storage")
	}
	cls, ok1 := t.Get(1).(*torchStorage)
	key, ok2 := t.Get(2).(string)
	numel, ok3 := t.Get(4).(int)
	if !ok1 || !ok2 || !ok3 {
		return nil, errors.New("storage tuple has unexpected types")
	}
	return &storageRef{dtype: cls.dtype, key: key, numel: numel}, nil
}

// TorchZipStats reads the tensor metadata of a PyTorch zip checkpoint: it
// unpickles the archive's single */data.pkl with an allowlist of torch
// classes and without loading storages, then counts the tensors and their
// elements. Call it only on a file the scanner passed (no finding at medium
// or above, no scan error): the unpickler builds nothing but plain
// containers and tensor descriptions, and the pickle's lengths are checked
// before gopickle allocates them, but it is still an unpickler.
func TorchZipStats(f modelfs.File) (st *TensorStats, err error) {
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	zr, err := zip.NewReader(r, f.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	var pkl *zip.File
	for _, m := range zr.File {
		dir, base, ok := strings.Cut(m.Name, "/")
		if ok && dir != "" && base == "data.pkl" {
			if pkl != nil {
				return nil, fmt.Errorf("%s: more than one data.pkl", f.Name)
			}
			pkl = m
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%s: no */data.pkl member", f.Name)
	}
	if pkl.UncompressedSize64 > MaxTorchPickleSize {
		return nil, fmt.Errorf("%s: %s: %d bytes exceeds the %d byte limit", f.Name, pkl.Name, pkl.UncompressedSize64, MaxTorchPickleSize)
	}
	rc, err := pkl.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.Name, pkl.Name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxTorchPickleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.Name, pkl.Name, err)
	}
	st, err = PickleTensorStats(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.Name, pkl.Name, err)
	}
	return st, nil
}

// PickleTensorStats unpickles a torch data.pkl as TorchZipStats does.
func PickleTensorStats(data []byte) (st *TensorStats, err error) {
	if len(data) > MaxTorchPickleSize {
		return nil, fmt.Errorf("%d bytes exceeds the %d byte limit", len(data), MaxTorchPickleSize)
	}
	if err := checkPickleLengths(data); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			st, err = nil, fmt.Errorf("unpickling: %v", p)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = findClass
	u.PersistentLoad = persistentLoad
	obj, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("unpickling: %w", err)
	}
	st = &TensorStats{}
	dtypes := map[string]bool{}
	budget := maxWalk
	seen := map[any]bool{}
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if budget <= 0 || depth > 64 {
			return
		}
		budget--
		switch x := v.(type) {
		case *tensorRef:
			if seen[x] {
				return
			}
			seen[x] = true
			n := int64(1)
			for _, d := range x.shape {
				if d != 0 && n > (1<<62)/int64(d) {
					n = 1 << 62
					break
				}
				n *= int64(d)
			}
			st.Tensors++
			st.Parameters += n
			dtypes[x.dtype] = true
		case *types.OrderedDict:
			if seen[x] {
				return
			}
			seen[x] = true
			for e := x.List.Front(); e != nil; e = e.Next() {
				if oe, ok := e.Value.(*types.OrderedDictEntry); ok {
					walk(oe.Value, depth+1)
				}
			}
		case *types.Dict:
			if seen[x] {
				return
			}
			seen[x] = true
			for _, e := range *x {
				walk(e.Value, depth+1)
			}
		case *types.List:
			if seen[x] {
				return
			}
			seen[x] = true
			for _, e := range *x {
				walk(e, depth+1)
			}
		case *types.Tuple:
			if seen[x] {
				return
			}
			seen[x] = true
			for _, e := range *x {
				walk(e, depth+1)
			}
		}
	}
	walk(obj, 0)
	for d := range dtypes {
		st.DTypes = append(st.DTypes, d)
	}
	sort.Strings(st.DTypes)
	return st, nil
}

// checkPickleLengths walks the opcodes of a pickle up to STOP and checks
// that every length-prefixed argument fits in the bytes that remain, so
// that gopickle, which allocates a declared length before reading it, never
// allocates more than the input's size. Unknown opcodes are refused.
func checkPickleLengths(p []byte) error {
	i := 0
	need := func(n uint64) error {
		if n > uint64(len(p)-i) {
			return fmt.Errorf("pickle: argument of %d bytes at byte %d runs past the end", n, i)
		}
		return nil
	}
	for ops := 0; ; ops++ {
		if ops > maxPickleOps {
			return fmt.Errorf("pickle: more than %d opcodes", maxPickleOps)
		}
		if i >= len(p) {
			return errors.New("pickle: no STOP opcode")
		}
		op := p[i]
		i++
		var n uint64 // length-prefixed payload
		switch op {
		case '.': // STOP
			return nil
		case '(', '0', '1', '2', 'N', 'Q', 'R', 'a', 'b', 'd', '}', 'e', 'l', ']', 'o', 's', 't', ')', 'u',
			0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x97, 0x98:
			continue
		case 'F', 'I', 'L', 'S', 'V', 'P', 'g', 'p', 'c', 'i':
			lines := 1
			if op == 'c' || op == 'i' {
				lines = 2
			}
			for range lines {
				j := bytes.IndexByte(p[i:], '\n')
				if j < 0 {
					return fmt.Errorf("pickle: unterminated line at byte %d", i)
				}
				i += j + 1
			}
			continue
		case 'K', 'h', 'q', 0x80, 0x82:
			n = 1
		case 'M', 0x83:
			n = 2
		case 'J', 'j', 'r', 0x84:
			n = 4
		case 'G':
			n = 8
		case 'U', 'C', 0x8a, 0x8c: // one-byte length
			if err := need(1); err != nil {
				return err
			}
			n = 1 + uint64(p[i])
		case 'T', 'X', 'B', 0x8b: // four-byte length
			if err := need(4); err != nil {
				return err
			}
			n = 4 + uint64(binary.LittleEndian.Uint32(p[i:]))
		case 0x8d, 0x8e, 0x96: // eight-byte length
			if err := need(8); err != nil {
				return err
			}
			l := binary.LittleEndian.Uint64(p[i:])
			if l > uint64(len(p)) {
				return fmt.Errorf("pickle: argument of %d bytes at byte %d runs past the end", l, i)
			}
			n = 8 + l
		case 0x95: // FRAME: its length must fit in what remains
			if err := need(8); err != nil {
				return err
			}
			if l := binary.LittleEndian.Uint64(p[i:]); l > uint64(len(p)-i-8) {
				return fmt.Errorf("pickle: frame of %d bytes at byte %d runs past the end", l, i-1)
			}
			n = 8
		default:
			return fmt.Errorf("pickle: opcode 0x%02x at byte %d is not supported", op, i-1)
		}
		if err := need(n); err != nil {
			return err
		}
		i += int(n)
	}
}
