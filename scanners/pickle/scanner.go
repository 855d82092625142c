// Package pickle finds what a Python pickle would import and call when
// loaded, without loading it. It decodes every opcode of protocols 0-5 the
// way CPython's C unpickler (Modules/_pickle.c) does, simulating the stack,
// the marks and the memo with symbolic values, so that STACK_GLOBAL operands
// are resolved exactly, dotted and aliased names are judged component by
// component, and bytes handed to pickle.loads (also through base64, hex or
// _codecs.encode) are scanned as nested pickles. It never constructs a
// Python object from the stream.
package pickle

import (
	"context"
	"errors"
	"io"

	"github.com/modelseal/modelseal/pkg/scan"
)

// Scanner is the scan.Scanner for plain pickle streams, stacked pickles
// included. Register it after every more specific format: almost any byte
// stream starts with a valid opcode, and Scan returns scan.ErrNotFormat for
// streams that fail before anything a loader would execute.
type Scanner struct{}

// Format implements scan.Scanner.
func (Scanner) Format() string { return "pickle" }

// Match implements scan.Scanner: the first byte must be an opcode.
func (Scanner) Match(head []byte, size int64) bool {
	return size > 0 && len(head) > 0 && isOpcode(head[0])
}

// Scan implements scan.Scanner.
func (Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	sum, err := Analyze(ctx, io.NewSectionReader(in.R, 0, in.Size), in, 0, env, Options{})
	if err == nil || !errors.Is(err, ErrNotPickle) {
		env.SetMeta(in, "pickle.imports", sum.Imports)
		env.SetMeta(in, "pickle.protocol", sum.Protocol)
		env.SetMeta(in, "pickle.count", sum.Pickles)
	}
	return err
}
