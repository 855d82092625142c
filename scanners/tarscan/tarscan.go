// Package tarscan scans tar archives member by member. Member data is
// stored uncompressed and contiguous, so each regular member is handed to
// the registry as a window on the archive, with no copy; compressed tars
// (tar.gz, tar.zst, ...) reach this scanner through the compressed-stream
// scanner, which hands it the decompressed tar. Names that would escape the
// extraction folder and links are reported; links are never followed.
//
// PyTorch's legacy tar format (torch.save before 1.0 with a tar: members
// sys_info, pickle, storages and tensors) gets special care: storages and
// tensors interleave pickles with raw data, which torch's _legacy_load reads
// in a fixed layout; the scanner parses that layout exactly, analyses every
// pickle in it, and bounds every length by the bytes that remain.
package tarscan

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/internal/pathcheck"
	"github.com/modelseal/modelseal/scanners/pickle"
)

const blockSize = 512

// Scanner scans tar archives. The zero value is ready to use.
type Scanner struct{}

// New returns a tar scanner.
func New() *Scanner { return &Scanner{} }

// Format returns "tar".
func (*Scanner) Format() string { return "tar" }

// Match reports a POSIX or GNU tar header ("ustar" at byte 257) whose
// checksum is right.
func (*Scanner) Match(head []byte, size int64) bool {
	return len(head) >= blockSize && size >= blockSize && string(head[257:262]) == "ustar" && checksumOK(head[:blockSize])
}

// checksumOK verifies a tar header block's checksum (unsigned sum with the
// checksum field read as spaces; some writers used a signed sum).
func checksumOK(b []byte) bool {
	field := strings.TrimRight(strings.TrimSpace(string(bytes.TrimRight(b[148:156], "\x00"))), "\x00")
	var want int64
	if _, err := fmt.Sscanf(field, "%o", &want); err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// Scan lists the archive and scans every regular member.
func (s *Scanner) Scan(ctx context.Context, in scan.Input, env *scan.Env) error {
	names := listNames(in)
	legacyTar := isLegacyTar(names)
	if legacyTar {
		env.Noted("pytorch-legacy-tar")
	}
	sr := io.NewSectionReader(in.R, 0, in.Size)
	tr := tar.NewReader(sr)
	count := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if count == 0 {
				return scan.ErrNotFormat
			}
			return fmt.Errorf("tar: after %d members: %w", count, err)
		}
		if count == 0 {
			env.Noted(s.Format())
		}
		count++
		off, _ := sr.Seek(0, io.SeekCurrent)
		name := hdr.Name
		loc := in.MemberLoc(name)
		if why := pathcheck.ArchiveName(name); why != "" {
			env.Report(finding.Finding{Rule: "archive/unsafe-name", Severity: finding.High, Location: loc,
				Message:  fmt.Sprintf("member name %q %s; extracting it would write outside the target folder", name, why),
				Evidence: map[string]string{"name": name}})
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink, tar.TypeLink:
			kind := map[byte]string{tar.TypeSymlink: "symbolic", tar.TypeLink: "hard"}[hdr.Typeflag]
			sev := finding.Medium
			if pathcheck.ArchiveName(hdr.Linkname) != "" {
				sev = finding.High
			}
			env.Report(finding.Finding{Rule: "archive/link", Severity: sev, Location: loc,
				Message:  fmt.Sprintf("member is a %s link to %q; it is not followed", kind, hdr.Linkname),
				Evidence: map[string]string{"target": hdr.Linkname}})
			continue
		case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		case tar.TypeDir:
			continue
		default:
			if hdr.Size > 0 {
				env.Skip(loc, fmt.Sprintf("tar member of type %q not scanned", hdr.Typeflag))
			}
			continue
		}
		if hdr.Size == 0 {
			continue
		}
		if hdr.Typeflag == tar.TypeGNUSparse || len(hdr.PAXRecords) > 0 && hasSparse(hdr) {
			// Sparse data is not contiguous: read it through the tar reader.
			if err := env.MemberStream(ctx, in, name, tr, 0); err != nil {
				return err
			}
			continue
		}
		size := hdr.Size
		truncated := size > in.Size-off
		if truncated {
			env.Fail(loc, fmt.Errorf("tar member %q: %d bytes declared but only %d remain; the part present is scanned", name, hdr.Size, in.Size-off))
			size = max(0, in.Size-off)
		}
		if legacyTar && (name == "storages" || name == "tensors") && hdr.Typeflag != tar.TypeGNUSparse {
			if err := scanLegacy(ctx, in, env, name, off, size); err != nil {
				return err
			}
			continue
		}
		if err := env.Member(ctx, in, name, io.NewSectionReader(in.R, off, size), size, 0); err != nil {
			return err
		}
		if truncated {
			break // the archive ends inside this member
		}
	}
	if count == 0 {
		return scan.ErrNotFormat
	}
	return s.polyglot(ctx, in, env)
}

// polyglot analyses the archive as a pickle when its first header looks
// like one (a first name starting with PROTO or holding control bytes):
// pickle.load would run such a file, whatever tar makes of it.
func (s *Scanner) polyglot(ctx context.Context, in scan.Input, env *scan.Env) error {
	var name [100]byte
	if _, err := in.R.ReadAt(name[:], 0); err != nil {
		return nil
	}
	field, _, _ := bytes.Cut(name[:], []byte{0})
	suspect := len(field) > 0 && field[0] == 0x80
	for _, c := range field {
		suspect = suspect || c < 0x20
	}
	if !suspect {
		return nil
	}
	_, err := pickle.Analyze(ctx, io.NewSectionReader(in.R, 0, in.Size), in, 0, env, pickle.Options{})
	if err != nil && !errors.Is(err, pickle.ErrNotPickle) {
		return fmt.Errorf("tar header read as a pickle: %w", err)
	}
	return nil
}

// listNames returns the names of the regular members, reading headers only.
func listNames(in scan.Input) map[string]bool {
	names := map[string]bool{}
	tr := tar.NewReader(io.NewSectionReader(in.R, 0, in.Size))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return names
		}
		if hdr.Typeflag == tar.TypeReg {
			names[hdr.Name] = true
		}
	}
}

func hasSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// isLegacyTar reports the members torch's legacy_load extracts.
func isLegacyTar(names map[string]bool) bool {
	return names["storages"] && names["tensors"] && names["pickle"]
}

// scanLegacy parses a legacy tar's storages or tensors member at off.
func scanLegacy(ctx context.Context, in scan.Input, env *scan.Env, name string, off, size int64) error {
	child := in
	child.Loc = in.MemberLoc(name)
	child.Name = name
	child.Depth = in.Depth + 1
	child.R = io.NewSectionReader(in.R, off, size)
	child.Size = size
	var end int64
	var err error
	if name == "storages" {
		end, err = parseStorages(ctx, child, env)
	} else {
		end, err = parseTensors(ctx, child, env)
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errLayout):
	case err != nil:
		env.Fail(child.At(-1), fmt.Errorf("pytorch legacy tar member %q: %w", name, err))
	case end < size:
		env.Report(finding.Finding{Rule: "torch/trailing-data", Severity: finding.Medium, Location: child.At(end),
			Message: fmt.Sprintf("%d bytes after the %s records, where torch.load never reads", size-end, name)})
		if _, err := pickle.Analyze(ctx, io.NewSectionReader(child.R, end, size-end), child, end, env, pickle.Options{}); err != nil && !errors.Is(err, pickle.ErrNotPickle) {
			env.Fail(child.At(end), fmt.Errorf("pickle hidden after the %s records: %w", name, err))
		}
	}
	return nil
}
