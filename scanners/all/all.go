// Package all is the registry of every format scanner modelseal has, in the
// order they are tried. Specific formats come before general ones: a PyTorch
// zip is a zip, a joblib file is a pickle, and the pickle scanner, which
// recognises almost any byte stream's first opcode, comes last but for the
// Jinja template scanner, which takes the text pickle declines.
package all

import (
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/gguf"
	"github.com/modelseal/modelseal/scanners/hfconfig"
	"github.com/modelseal/modelseal/scanners/joblib"
	"github.com/modelseal/modelseal/scanners/keras"
	"github.com/modelseal/modelseal/scanners/numpy"
	"github.com/modelseal/modelseal/scanners/onnx"
	"github.com/modelseal/modelseal/scanners/pickle"
	"github.com/modelseal/modelseal/scanners/safetensors"
	"github.com/modelseal/modelseal/scanners/sevenzip"
	"github.com/modelseal/modelseal/scanners/tarscan"
	"github.com/modelseal/modelseal/scanners/tfsavedmodel"
	"github.com/modelseal/modelseal/scanners/torchlegacy"
	"github.com/modelseal/modelseal/scanners/zipscan"
)

// Scanners returns a fresh list of every scanner, most specific first.
func Scanners() []scan.Scanner {
	return []scan.Scanner{
		zipscan.New(),
		numpy.New(),
		joblib.New(),
		tarscan.New(),
		sevenzip.New(),
		safetensors.Scanner{},
		// Keras claims only JSON whose top level has class_name and config
		// (or keras_version), and returns ErrNotFormat for other JSON, so it
		// goes before the other JSON scanners: a Keras config padded with
		// their keys must still reach it.
		keras.Scanner{},
		keras.H5Scanner{},
		// SavedModel protobufs; both return ErrNotFormat for other
		// protobufs (ONNX begins with the same two wire tags).
		tfsavedmodel.Scanner{},
		tfsavedmodel.MetadataScanner{},
		safetensors.IndexScanner{},
		gguf.Scanner{},
		onnx.Scanner{},
		hfconfig.Scanner{},
		torchlegacy.New(),
		pickle.Scanner{},
		// Text with Jinja tags: after pickle, since a protocol-0 pickle is
		// text too and must never be taken for a template.
		hfconfig.JinjaScanner{},
	}
}
