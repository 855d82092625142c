package pickle

import (
	"strconv"
	"strings"
)

// kind is what the scanner knows of a value on the unpickler's stack.
type kind uint8

const (
	kUnknown kind = iota // anything the scanner does not model
	kNone
	kBool
	kInt
	kFloat
	kStr   // str (text)
	kBytes // bytes or bytearray
	kTuple
	kList
	kDict
	kSet
	kGlobal // the result of GLOBAL/STACK_GLOBAL/INST's import: a class, function or module
	kCall   // the result of calling something (REDUCE, NEWOBJ, OBJ, INST)
	kPID    // the result of persistent_load
)

// maxItems bounds how many items of one container the scanner keeps; the
// rest are counted, not kept.
const maxItems = 4096

// value is a symbolic Python object. Pointers are shared through the memo
// and DUP just as CPython shares object references.
type value struct {
	k kind
	// s is the text of a str, the bytes of a bytes (when captured), or the
	// canonical dotted name of a global.
	s string
	// full is false when a str or bytes was too long to keep.
	full bool
	// n is an int's value (when it fits) or a str/bytes length.
	n int64
	// items are a container's items (a dict's as key, value pairs).
	items []*value
	// fn and args are a call's callable and arguments.
	fn, args *value
	// state is what BUILD gave a call result.
	state *value
}

func (v *value) str() (string, bool) {
	if v != nil && v.k == kStr && v.full {
		return v.s, true
	}
	return "", false
}

// item returns a tuple's i-th item.
func (v *value) item(i int) *value {
	if v == nil || (v.k != kTuple && v.k != kList) || i >= len(v.items) {
		return nil
	}
	return v.items[i]
}

// get returns a dict's value for a str key.
func (v *value) get(key string) *value {
	if v == nil || v.k != kDict {
		return nil
	}
	for i := 0; i+1 < len(v.items); i += 2 {
		if s, ok := v.items[i].str(); ok && s == key {
			return v.items[i+1]
		}
	}
	return nil
}

// describe renders a value briefly for messages.
func (v *value) describe() string {
	if v == nil {
		return "nothing"
	}
	switch v.k {
	case kStr:
		s := v.s
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return strconv.Quote(s)
	case kBytes:
		return "bytes(" + strconv.FormatInt(v.n, 10) + ")"
	case kInt:
		return strconv.FormatInt(v.n, 10)
	case kGlobal:
		return v.s
	case kCall:
		if v.fn != nil && v.fn.k == kGlobal {
			return v.fn.s + "(...)"
		}
		return "call result"
	case kNone:
		return "None"
	case kTuple, kList, kDict, kSet:
		return [...]string{kTuple: "tuple", kList: "list", kDict: "dict", kSet: "set"}[v.k]
	case kPID:
		return "persistent object"
	}
	return "unknown value"
}

// isGlobalNamed reports whether v is the global (canonical) name.
func (v *value) isGlobalNamed(names ...string) bool {
	if v == nil || v.k != kGlobal {
		return false
	}
	for _, n := range names {
		if v.s == n {
			return true
		}
	}
	return false
}

// calledGlobal returns the canonical name of the global a call result came
// from, looking through copyreg._reconstructor(cls, ...) and
// cls.__new__ (NEWOBJ), or "".
func (v *value) calledGlobal() string {
	if v == nil || v.k != kCall || v.fn == nil || v.fn.k != kGlobal {
		return ""
	}
	if v.fn.s == "copyreg._reconstructor" {
		if c := v.args.item(0); c != nil && c.k == kGlobal {
			return c.s
		}
	}
	return v.fn.s
}

func isDunder(s string) bool { return strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__") }
