// Command orascopy is the baseline of the OCI benchmark: a plain oras-go
// push or pull of a model folder (what `oras push` and `oras pull` do: a
// file store, one layer per file named by its title annotation, oras.Copy),
// with no signing and no verification beyond the blob digests.
//
//	orascopy push DIR HOST/REPO:TAG
//	orascopy pull HOST/REPO:TAG DIR
//
// Plain HTTP: it is only for the loopback registry of the benchmark.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/file"
	"oras.land/oras-go/v2/registry/remote"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: orascopy push DIR REF | orascopy pull REF DIR")
		os.Exit(3)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = push(context.Background(), os.Args[2], os.Args[3])
	case "pull":
		err = pull(context.Background(), os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orascopy:", err)
		os.Exit(1)
	}
}

func repository(ref string) (*remote.Repository, string, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, "", err
	}
	repo.PlainHTTP = true
	return repo, repo.Reference.Reference, nil
}

func push(ctx context.Context, dir, ref string) error {
	repo, tag, err := repository(ref)
	if err != nil {
		return err
	}
	fs, err := file.New(dir)
	if err != nil {
		return err
	}
	defer fs.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var layers []ocispec.Descriptor
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		d, err := fs.Add(ctx, e.Name(), "application/vnd.cncf.model.weight.v1.raw", filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		layers = append(layers, d)
	}
	desc, err := oras.PackManifest(ctx, fs, oras.PackManifestVersion1_1, "application/vnd.cncf.model.manifest.v1+json",
		oras.PackManifestOptions{Layers: layers})
	if err != nil {
		return err
	}
	if err := fs.Tag(ctx, desc, tag); err != nil {
		return err
	}
	_, err = oras.Copy(ctx, fs, tag, repo, tag, oras.DefaultCopyOptions)
	return err
}

func pull(ctx context.Context, ref, dir string) error {
	repo, tag, err := repository(ref)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fs, err := file.New(dir)
	if err != nil {
		return err
	}
	defer fs.Close()
	_, err = oras.Copy(ctx, repo, tag, fs, tag, oras.DefaultCopyOptions)
	return err
}
