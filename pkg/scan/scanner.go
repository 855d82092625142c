// Package scan runs format scanners over files, folders and the members of
// containers. A Scanner recognises its format by content (never by name) and
// reports findings through an Env; containers hand their members back to the
// Env, which picks the next scanner under a budget of depth, member count and
// expanded bytes. Scanners never decide the exit code: Result does, with the
// threshold the caller gives.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/modelseal/modelseal/pkg/finding"
)

// HeadSize is how many leading bytes a Scanner's Match sees (fewer when the
// stream is shorter). It covers the tar magic at offset 257 and an HDF5
// signature after a user block of up to 2 KB.
const HeadSize = 4096

// Input is one byte stream to scan: a file, or a member of a container.
type Input struct {
	// R reads the stream; it is valid until Scan returns.
	R io.ReaderAt
	// Size is the stream's length in bytes.
	Size int64
	// Loc names the stream (file path and member chain). Its Offset is -1.
	Loc finding.Location
	// Name is the innermost name: the file's base name or the member name.
	// Scanners may use it in messages, never to decide the format.
	Name string
	// Depth is the container nesting depth: 0 for a file.
	Depth int
}

// At returns the input's location with an offset inside the stream.
func (in Input) At(off int64) finding.Location {
	l := in.Loc
	l.Members = append([]string(nil), in.Loc.Members...)
	l.Offset = off
	return l
}

// Scanner scans one format.
type Scanner interface {
	// Format names the format, e.g. "pickle" or "pytorch-zip".
	Format() string
	// Match reports whether the first bytes of a stream of the given size
	// look like this format. It must be cheap and must not read further.
	Match(head []byte, size int64) bool
	// Scan reads the whole input and reports through env. It returns
	// ErrNotFormat, having reported nothing, when a closer look shows the
	// input is not this format after all; any other error means the input
	// could not be fully scanned (the findings reported so far stand).
	Scan(ctx context.Context, in Input, env *Env) error
}

// ErrNotFormat is returned by Scanner.Scan when Match was too hopeful.
var ErrNotFormat = errors.New("not this format")

// Problem is a stream that could not be scanned, or was not scanned, and why.
type Problem struct {
	Location finding.Location `json:"location"`
	Message  string           `json:"message"`
}

// FormatError reports a malformed stream, in the manner of debug/elf's
// FormatError: the offset where the problem was seen, what was wrong, and
// the value found there, if any.
type FormatError struct {
	Format string
	Off    int64
	Msg    string
	Val    any
}

func (e *FormatError) Error() string {
	msg := e.Format + ": " + e.Msg
	if e.Val != nil {
		msg += fmt.Sprintf(" '%v'", e.Val)
	}
	if e.Off >= 0 {
		msg += fmt.Sprintf(" at byte %d", e.Off)
	}
	return msg
}
