// Package sevenzip scans 7z archives with github.com/bodgit/sevenzip: each
// member is decompressed as a stream into the registry under the container
// budget. Encrypted members (and archives with encrypted headers) cannot be
// scanned and are reported as such; unsafe member names are reported.
package sevenzip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bodgit/sevenzip"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
)

// magic starts every 7z archive.
var magic = []byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}

// Scanner scans 7z archives. The zero value is ready to use.
type Scanner struct{}

// New returns a 7z scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "7z".
func (*Scanner) Format() string { return "7z" }

// Match reports whether head starts with the 7z signature.
func (*Scanner) Match(head []byte, size int64) bool { return bytes.HasPrefix(head, magic) }

// Scan lists the archive and scans every member.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) (err error) {
	defer func() {
		// The archive parser is third-party code fed hostile input: a panic
		// in it is a broken archive, not a crash of the run.
		if p := recover(); p != nil {
			err = fmt.Errorf("7z: archive parser failed: %v", p)
		}
	}()
	env.Noted(s.Format())
	zr, err := sevenzip.NewReader(in.R, in.Size)
	if err != nil {
		var re *sevenzip.ReadError
		if errors.As(err, &re) && re.Encrypted || strings.Contains(err.Error(), "password") {
			env.Report(finding.Finding{Rule: "archive/encrypted", Severity: finding.Low, Location: in.At(-1),
				Message: "7z archive has encrypted headers: its members could not be listed or scanned"})
			env.Skip(in.At(-1), "encrypted 7z archive: contents cannot be scanned without the password")
			return nil
		}
		return fmt.Errorf("7z: reading the archive headers: %w", err)
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.member(ctx, in, env, f); err != nil {
			return err
		}
	}
	return nil
}

func (s *Scanner) member(ctx context.Context, in scan.Input, env *scan.Env, f *sevenzip.File) error {
	name := f.Name
	loc := in.MemberLoc(name)
	if why := unsafeName(name); why != "" {
		env.Report(finding.Finding{Rule: "archive/unsafe-name", Severity: finding.High, Location: loc,
			Message:  fmt.Sprintf("member name %q %s; extracting it would write outside the target folder", name, why),
			Evidence: map[string]string{"name": name}})
	}
	if f.FileInfo().IsDir() || f.UncompressedSize == 0 {
		return nil
	}
	if r := env.Limits.MaxRatio; r > 0 && in.Size > 0 && f.UncompressedSize/uint64(in.Size) > uint64(r) {
		env.Report(finding.Finding{Rule: "archive/compression-ratio", Severity: finding.High, Location: loc,
			Message: fmt.Sprintf("member declares %d bytes from a %d-byte archive, a ratio above %d:1 (decompression bomb?); not scanned", f.UncompressedSize, in.Size, r)})
		return nil
	}
	rc, err := f.Open()
	if err != nil {
		return s.readError(env, loc, name, err, 0)
	}
	defer rc.Close()
	kr := &keepReader{r: rc}
	if err := env.MemberStream(ctx, in, name, kr, in.Size); err != nil {
		return err
	}
	if kr.err != nil {
		return s.readError(env, loc, name, kr.err, kr.n)
	}
	return nil
}

// readError records why a member could not be (fully) read.
func (s *Scanner) readError(env *scan.Env, loc finding.Location, name string, err error, n int64) error {
	var re *sevenzip.ReadError
	if errors.As(err, &re) && re.Encrypted {
		env.Report(finding.Finding{Rule: "archive/encrypted", Severity: finding.Low, Location: loc,
			Message: "7z member is encrypted: its contents could not be scanned"})
		env.Skip(loc, "encrypted 7z member: contents cannot be scanned without the password")
		return nil
	}
	env.Fail(loc, fmt.Errorf("7z member %q: decompressing after %d bytes (the bytes before were scanned): %w", name, n, err))
	return nil
}

// keepReader ends the stream cleanly at the first error, which it keeps, so
// the bytes read before a corrupt block are still scanned.
type keepReader struct {
	r   io.Reader
	n   int64
	err error
}

func (k *keepReader) Read(p []byte) (int, error) {
	if k.err != nil {
		return 0, io.EOF
	}
	n, err := k.r.Read(p)
	k.n += int64(n)
	if err != nil && err != io.EOF {
		k.err = err
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	return n, err
}

// unsafeName says why a member name is unsafe to extract, or "".
func unsafeName(name string) string {
	switch {
	case strings.IndexByte(name, 0) >= 0:
		return "contains a NUL byte"
	case strings.HasPrefix(name, "/"), strings.HasPrefix(name, `\`):
		return "is absolute"
	case len(name) >= 2 && name[1] == ':' && (name[0]|0x20 >= 'a' && name[0]|0x20 <= 'z'):
		return "starts with a drive letter"
	}
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return `has a ".." component`
		}
	}
	return ""
}
