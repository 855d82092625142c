package main

import (
	"io"

	"github.com/spf13/cobra"
)

// newOMSCmd is the conformance adapter that OMS client test suites drive:
//
//	modelseal oms sign-model --method key|certificate|sigstore --model-path D --output-bundle F
//	    [--private-key K] [--signing-cert C] [--cert-chain I]... [--ignore-paths P]...
//	modelseal oms verify-model --method key|certificate|sigstore --model-path D --bundle F
//	    [--public-key K] [--cert-chain CA]... [--ignore-paths P]... [--ignore-unsigned-files]
//
// Exit code 0 means success; anything else is a failure.
func newOMSCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oms",
		Short: "OpenSSF Model Signing conformance adapter (sign-model, verify-model)",
	}
	cmd.AddCommand(newOMSSignCmd(stdout, stderr), newOMSVerifyCmd(stdout, stderr))
	return cmd
}

func newOMSSignCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		hf            hashFlags
		sf            signerFlags
		method, model string
		output        string
	)
	cmd := &cobra.Command{
		Use:   "sign-model",
		Short: "Sign a model (conformance adapter protocol)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" || output == "" {
				return usageErr("--model-path and --output-bundle are required")
			}
			signer, err := sf.signer(cmd.Context(), method)
			if err != nil {
				return err
			}
			return signModel(cmd.Context(), stdout, stderr, model, output, &hf, signer)
		},
	}
	f := cmd.Flags()
	f.StringVar(&method, "method", "sigstore", "key, certificate or sigstore")
	f.StringVar(&model, "model-path", "", "model folder or file")
	f.StringVar(&output, "output-bundle", "", "where to write the signature bundle")
	hf.register(f)
	sf.register(f, "")
	f.SetNormalizeFunc(normalizeFlag)
	return cmd
}

func newOMSVerifyCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		vf                    = verifierFlags{stderr: stderr}
		method, model, bundle string
	)
	cmd := &cobra.Command{
		Use:   "verify-model",
		Short: "Verify a model (conformance adapter protocol)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" || bundle == "" {
				return usageErr("--model-path and --bundle are required")
			}
			return verifyModel(cmd.Context(), stdout, stderr, model, bundle, method, &vf)
		},
	}
	f := cmd.Flags()
	f.StringVar(&method, "method", "sigstore", "key, certificate or sigstore")
	f.StringVar(&model, "model-path", "", "model folder or file")
	f.StringVar(&bundle, "bundle", "", "the signature bundle to check")
	vf.register(f, "")
	f.SetNormalizeFunc(normalizeFlag)
	return cmd
}
