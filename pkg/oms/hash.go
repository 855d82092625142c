package oms

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
)

// HashOptions controls HashModel.
type HashOptions struct {
	// Files are the listing options (ignores, symlink policy).
	Files modelfs.Options
	// Digest are the hashing options (algorithm, shards, workers).
	Digest digest.Options
	// SignaturePath, when inside the model folder, is ignored and recorded
	// in ignore_paths, as model_signing does with model.sig.
	SignaturePath string
}

// Hashed is a listed and hashed model with its manifest.
type Hashed struct {
	Set      *modelfs.Set
	Digests  *digest.Result
	Manifest *Manifest
}

// SignatureIgnore returns the signature's path relative to the model
// folder, or "" when it lies outside (or the model is a single file).
func SignatureIgnore(modelPath, sigPath string) string {
	if sigPath == "" {
		return ""
	}
	am, err1 := filepath.Abs(modelPath)
	as, err2 := filepath.Abs(sigPath)
	if err1 != nil || err2 != nil {
		return ""
	}
	rel, err := filepath.Rel(am, as)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	return filepath.ToSlash(rel)
}

// HashModel lists the model at path, hashes it and builds its manifest.
func HashModel(ctx context.Context, path string, opts HashOptions) (*Hashed, error) {
	fo := opts.Files
	fo.Ignore = slices.Clone(fo.Ignore)
	if s := SignatureIgnore(path, opts.SignaturePath); s != "" {
		fo.Ignore = append(fo.Ignore, s)
	}
	set, err := modelfs.Open(path, fo)
	if err != nil {
		return nil, err
	}
	res, err := digest.Compute(ctx, set, opts.Digest)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	m := New(set, res, fo.Symlinks == modelfs.FollowSymlinks, set.Ignored)
	return &Hashed{Set: set, Digests: res, Manifest: m}, nil
}
