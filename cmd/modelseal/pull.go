package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/oci"
)

func newPullCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		vf       = verifierFlags{stderr: stderr}
		rf       registryFlags
		sc       scanFlags
		insecure bool
	)
	cmd := &cobra.Command{
		Use:   "pull REF DIR",
		Short: "Download a model artifact into a folder, verified before anything is written",
		Long: `Download a model artifact (CNCF ModelPack, older vnd.cnai ModelPack, KitOps ModelKit or
Docker Model Runner) into DIR, which must not exist or be empty. The signature attached
to the manifest is checked first, with the same flags as modelseal verify: --public-key
(key), --cert-chain (certificate) or --identity and --identity-provider (sigstore).
Blobs go to a temporary folder next to DIR and are checked against their digests; file
paths from annotations and tar layers are refused when absolute, with "..", backslashes,
links or duplicates; --scan scans the files; only a fully verified model is moved into DIR.
Without verification material pull refuses, unless --insecure-skip-verify is given.
Exit codes: 0 pulled, 1 verification failed, the artifact was refused or the scan failed,
2 an input or the registry failed, 3 usage.`,
		Example: "  modelseal pull --public-key key.pub localhost:5000/models/tiny:v1 ./tiny --plain-http\n  modelseal pull --identity me@example.com --identity-provider https://github.com/login/oauth ghcr.io/me/tiny:v1 ./tiny",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref, dir := args[0], args[1]
			method := verifyMethod(&vf)
			if method == "" && !insecure {
				return usageErr("pull verifies the model: give --public-key, --cert-chain or --identity/--identity-provider (or --insecure-skip-verify to pull unverified)")
			}
			if method != "" && insecure {
				return usageErr("--insecure-skip-verify contradicts the verification flags given")
			}
			check, err := sc.check(stderr, vf.workers)
			if err != nil {
				return err
			}
			opts := oci.PullOptions{Check: check, Progress: progressBar(stderr)}
			if method != "" {
				ver, err := vf.verifier(method)
				if err != nil {
					return err
				}
				opts.Verify = &oci.VerifyOptions{Verifier: ver, IgnorePaths: vf.ignorePaths, IgnoreUnsigned: vf.ignoreUnsigned}
			}
			repo, err := rf.open(ctx, ref, false)
			if err != nil {
				return err
			}
			p, err := oci.Pull(ctx, repo, dir, opts)
			if err != nil {
				return ociErr(err)
			}
			state := "UNVERIFIED (--insecure-skip-verify)"
			if p.Verified != nil {
				state = fmt.Sprintf("verified (%s signature, root sha256:%x)", method, p.Verified.Signed.RootDigest())
			}
			fmt.Fprintf(stdout, "pulled %s@%s (%s): %d files, %s -> %s, %s\n",
				ref, p.Artifact.Descriptor.Digest, p.Artifact.Format, p.Files, humanBytes(p.Size), dir, state)
			return nil
		},
	}
	vf.register(cmd.Flags(), "")
	rf.register(cmd.Flags())
	sc.register(cmd.Flags())
	cmd.Flags().BoolVar(&insecure, "insecure-skip-verify", false, "pull without checking any signature (blob digests and paths are still checked)")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
