package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/oci"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
)

func newPushCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		hf      hashFlags
		sg      signFlags
		rf      registryFlags
		created string
	)
	cmd := &cobra.Command{
		Use:   "push PATH REF",
		Short: "Push a model folder to a registry or OCI layout as a CNCF ModelPack artifact",
		Long: `Push a model folder as a CNCF ModelPack v1 artifact: one raw layer per file (annotation
org.cncf.model.filepath), so every layer digest is the file's sha256, and a config filled
from config.json and the README front matter. Files are hashed once; the same digests make
the layers and, with --sign, the signed OMS statement, attached as an OCI 1.1 referrer
(cosign v3 bundle layout). --bom attaches a CycloneDX BOM the same way. The manifest is
reproducible: org.opencontainers.image.created is fixed unless --created or
SOURCE_DATE_EPOCH says otherwise.
REF is registry/repository[:tag|@sha256:...] (credentials from the Docker configuration
and its credential helpers) or oci:DIR[:tag], a local OCI image layout.
Exit codes: 0 pushed, 1 signing failed, 2 an input or the registry failed, 3 usage.`,
		Example: "  modelseal push ./tiny-model localhost:5000/models/tiny:v1 --plain-http\n  modelseal push ./tiny-model oci:/tmp/layout:v1 --sign --private-key key.pem\n  modelseal push ./tiny-model ghcr.io/me/tiny:v1 --sign --bom=tiny.cdx.json",
		Args:    exactArgs(2, &sg),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			model, ref := args[0], args[1]
			fi, err := os.Stat(model)
			if err != nil {
				return withCode(exitInput, fmt.Errorf("model: %w", err))
			}
			if !fi.IsDir() {
				return usageErr("model %s: push takes a model folder", model)
			}
			alg, err := digest.ParseAlgorithm(hf.algorithm)
			if err != nil || alg != digest.SHA256 || hf.shardSize != 0 {
				return usageErr("push hashes whole files with sha256 (layer digests are file digests): drop --hash-algorithm and --shard-size")
			}
			when, err := createdTime(created)
			if err != nil {
				return err
			}
			signer, method, err := sg.signer(ctx)
			if err != nil {
				return err
			}
			bom, err := sg.readBOM()
			if err != nil {
				return err
			}
			opts, err := hf.options(model, defaultSignature(model), stderr)
			if err != nil {
				return err
			}
			h, err := oms.HashModel(ctx, model, opts)
			if err != nil {
				return withCode(exitInput, err)
			}
			repo, err := rf.open(ctx, ref, true)
			if err != nil {
				return err
			}
			desc, err := oci.Push(ctx, repo, h.Set, h.Digests, oci.PushOptions{Created: when, Progress: progressBar(stderr)})
			if err != nil {
				return ociErr(err)
			}
			fmt.Fprintf(stdout, "pushed %s: %d files, %s -> %s@%s\n", h.Set.Name, len(h.Set.Files), humanBytes(h.Set.TotalSize()), ref, desc.Digest)
			if signer != nil {
				bundle, err := sign.Model(ctx, h.Manifest, signer)
				if err != nil {
					return withCode(exitFail, fmt.Errorf("signing %s: %w", model, err))
				}
				sd, err := oci.AttachSignature(ctx, repo, desc, bundle, when)
				if err != nil {
					return ociErr(err)
				}
				fmt.Fprintf(stdout, "signed %s (%s): root sha256:%x, signature %s\n", ref, method, h.Manifest.RootDigest(), sd.Digest)
			}
			if sg.bom == bomGenerate {
				// The BOM of modelseal bom, from the same digests (bom.go).
				var buf bytes.Buffer
				if err := buildBOM(ctx, &buf, stderr, nil, h.Set, h.Digests, nil, &bomFlags{specVersion: "1.6"}, "", hf.workers); err != nil {
					return err
				}
				bom = buf.Bytes()
			}
			if bom != nil {
				bd, err := oci.AttachBOM(ctx, repo, desc, bom, when)
				if err != nil {
					return ociErr(err)
				}
				fmt.Fprintf(stdout, "attached BOM: %s\n", bd.Digest)
			}
			return nil
		},
	}
	hf.register(cmd.Flags())
	sg.register(cmd.Flags())
	rf.register(cmd.Flags())
	cmd.Flags().StringVar(&created, "created", "", "creation time to record, RFC 3339 (default: $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z for reproducible digests)")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
