package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/oci"
	"github.com/modelseal/modelseal/pkg/sign"
)

func newAttachCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		sg      signFlags
		rf      registryFlags
		created string
	)
	cmd := &cobra.Command{
		Use:   "attach REF",
		Short: "Sign an artifact already in a registry, or attach a BOM, without downloading it",
		Long: `Attach an OMS signature (--sign, with the key material flags of modelseal sign) and/or a
CycloneDX BOM (--bom FILE) to a model artifact already pushed, as OCI 1.1 referrers.
The signed statement is computed from the manifest's layer digests (each raw layer is one
file, its digest the file's sha256): no blob is downloaded.
Exit codes: 0 attached, 1 signing failed or the artifact cannot be signed from its digests,
2 an input or the registry failed, 3 usage.`,
		Example: "  modelseal attach --sign --private-key key.pem localhost:5000/models/tiny:v1 --plain-http\n  modelseal attach --bom=tiny.cdx.json oci:/tmp/layout:v1",
		Args:    exactArgs(1, &sg),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref := args[0]
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
			if sg.bom == bomGenerate {
				return usageErr("attach needs a BOM file: --bom FILE (make one with modelseal bom)")
			}
			if signer == nil && bom == nil {
				return usageErr("nothing to attach: give --sign and/or --bom")
			}
			repo, err := rf.open(ctx, ref, false)
			if err != nil {
				return err
			}
			a, err := oci.Resolve(ctx, repo)
			if err != nil {
				return ociErr(err)
			}
			if signer != nil {
				m, err := oci.LayerManifest(a, oci.ModelName(ctx, repo, a))
				if err != nil {
					return ociErr(fmt.Errorf("%s: %w", ref, err))
				}
				bundle, err := sign.Model(ctx, m, signer)
				if err != nil {
					return withCode(exitFail, fmt.Errorf("signing %s: %w", ref, err))
				}
				sd, err := oci.AttachSignature(ctx, repo, a.Descriptor, bundle, when)
				if err != nil {
					return ociErr(err)
				}
				fmt.Fprintf(stdout, "signed %s@%s (%s): %d files, root sha256:%x, signature %s\n",
					ref, a.Descriptor.Digest, method, len(m.Resources), m.RootDigest(), sd.Digest)
			}
			if bom != nil {
				bd, err := oci.AttachBOM(ctx, repo, a.Descriptor, bom, when)
				if err != nil {
					return ociErr(err)
				}
				fmt.Fprintf(stdout, "attached BOM %s to %s@%s: %s\n", sg.bom, ref, a.Descriptor.Digest, bd.Digest)
			}
			return nil
		},
	}
	sg.register(cmd.Flags())
	rf.register(cmd.Flags())
	cmd.Flags().StringVar(&created, "created", "", "creation time of the referrers, RFC 3339 (default: $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z)")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
