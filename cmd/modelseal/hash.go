package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/oms"
)

func newHashCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		hf     hashFlags
		sig    string
		format string
	)
	cmd := &cobra.Command{
		Use:   "hash MODEL",
		Short: "Print the OMS manifest and root digest of a model folder or file",
		Long: `Hash every file of a model as signing would (like model_signing digest) and print one line per
file or shard ("<digest>  <name>"), then the root digest: SHA-256 over the listed digests.
--format statement prints the unsigned in-toto statement instead. The default signature file
(model.sig) is left out, as are the git paths at the top level.
Exit codes: 0 done, 2 the model could not be read, 3 usage.`,
		Example: "  modelseal hash model/\n  modelseal hash --shard-size 1000000000 --hash-algorithm blake3 model/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			model := args[0]
			if _, err := os.Stat(model); err != nil {
				return withCode(exitInput, fmt.Errorf("model: %w", err))
			}
			if sig == "" {
				sig = defaultSignature(model)
			}
			if format != "text" && format != "statement" {
				return usageErr("--format: want text or statement, not %q", format)
			}
			opts, err := hf.options(model, sig, stderr)
			if err != nil {
				return err
			}
			h, err := oms.HashModel(cmd.Context(), model, opts)
			if err != nil {
				return withCode(exitInput, err)
			}
			if format == "statement" {
				st, err := h.Manifest.Statement()
				if err != nil {
					return withCode(exitIntern, err)
				}
				_, err = fmt.Fprintf(stdout, "%s\n", st)
				return err
			}
			for _, r := range h.Manifest.Resources {
				fmt.Fprintf(stdout, "%s  %s\n", hex.EncodeToString(r.Digest), r.Name)
			}
			_, err = fmt.Fprintf(stdout, "%s  %s (root, sha256 over %d %s digests)\n",
				hex.EncodeToString(h.Manifest.RootDigest()), h.Set.Name, len(h.Manifest.Resources), h.Digests.Algorithm)
			return err
		},
	}
	hf.register(cmd.Flags())
	cmd.Flags().StringVar(&sig, "signature", "", "signature file to leave out (default: model.sig in the model folder)")
	cmd.Flags().StringVar(&format, "format", "text", "text or statement")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
