package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
)

// verifierFlags are the trust flags of every verification method.
type verifierFlags struct {
	publicKey     string
	certChain     []string
	identity      string
	identityRegex string
	issuer        string
	issuerRegex   string
	trustedRoot   string
	offline       bool
	// stderr receives a note of which trusted root was used.
	stderr         io.Writer
	trustConfig    string
	ignorePaths    []string
	ignoreUnsigned bool
	workers        int
}

func (v *verifierFlags) register(fs *pflag.FlagSet, method string) {
	if method == "key" || method == "" {
		fs.StringVar(&v.publicKey, "public-key", "", "PEM (or DER) EC public key of the signer")
	}
	if method == "certificate" || method == "" {
		fs.StringSliceVar(&v.certChain, "cert-chain", nil, "PEM CA certificates to trust (the root, and intermediates if wanted); repeatable")
	}
	if method == "sigstore" || method == "" {
		fs.StringVar(&v.identity, "identity", "", "expected signer identity (certificate SAN: email or URI), exact")
		fs.StringVar(&v.identityRegex, "identity-regex", "", "expected signer identity, as a regular expression matching the whole SAN")
		fs.StringVar(&v.issuer, "identity-provider", "", "expected OIDC issuer, exact")
		fs.StringVar(&v.issuerRegex, "identity-provider-regex", "", "expected OIDC issuer, as a regular expression matching it whole")
		fs.StringVar(&v.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json (default: the public-good root, refreshed through TUF when the network allows, else the one embedded in modelseal)")
		fs.StringVar(&v.trustConfig, "trust-config", "", "Sigstore client trust config whose trustedRoot to use")
		fs.BoolVar(&v.offline, "offline", false, "do not refresh the public-good trusted root through TUF; use the one embedded in modelseal (also MODELSEAL_OFFLINE=1)")
	}
	fs.StringSliceVar(&v.ignorePaths, "ignore-paths", nil, "more paths to leave out, relative to the model (or to the working directory when they point inside it); repeatable")
	fs.BoolVar(&v.ignoreUnsigned, "ignore-unsigned-files", false, "accept files the signature does not list (only signed files are checked)")
	fs.IntVar(&v.workers, "workers", 0, "parallel hashing workers (default: all cores)")
}

func (v *verifierFlags) verifier(method string) (verify.Verifier, error) {
	switch method {
	case "key":
		if v.publicKey == "" {
			return nil, usageErr("--public-key is required for key verification")
		}
		data, err := readInput("--public-key", v.publicKey, sign.MaxKeyFileSize)
		if err != nil {
			return nil, err
		}
		pub, err := sign.ParsePublicKey(data)
		if err != nil {
			return nil, withCode(exitInput, fmt.Errorf("--public-key %s: %w", v.publicKey, err))
		}
		return &verify.KeyVerifier{Key: pub}, nil
	case "certificate":
		if len(v.certChain) == 0 {
			return nil, usageErr("--cert-chain (the trusted CA certificates) is required for certificate verification")
		}
		roots, err := readCerts("--cert-chain", v.certChain)
		if err != nil {
			return nil, err
		}
		return &verify.CertificateVerifier{Roots: roots}, nil
	case "sigstore":
		if v.identity == "" && v.identityRegex == "" {
			return nil, usageErr("--identity (or --identity-regex) is required for sigstore verification")
		}
		if v.issuer == "" && v.issuerRegex == "" {
			return nil, usageErr("--identity-provider (or --identity-provider-regex) is required for sigstore verification")
		}
		sv := &verify.SigstoreVerifier{Identity: v.identity, IdentityRegex: v.identityRegex, Issuer: v.issuer, IssuerRegex: v.issuerRegex}
		switch {
		case v.trustedRoot != "":
			data, err := readInput("--trusted-root", v.trustedRoot, sign.MaxConfigSize)
			if err != nil {
				return nil, err
			}
			tr, err := root.NewTrustedRootFromJSON(data)
			if err != nil {
				return nil, usageErr("--trusted-root %s: %v", v.trustedRoot, err)
			}
			sv.Trusted = tr
		case v.trustConfig != "":
			data, err := readInput("--trust-config", v.trustConfig, sign.MaxConfigSize)
			if err != nil {
				return nil, err
			}
			_, tr, err := sign.ParseTrustConfig(data)
			if err != nil || tr == nil {
				return nil, usageErr("--trust-config %s: no trusted root (%v)", v.trustConfig, err)
			}
			sv.Trusted = tr
		default:
			tr, from, err := verify.RefreshedTrustedRoot(context.Background(), verify.TrustedRootOptions{
				Offline: v.offline || os.Getenv("MODELSEAL_OFFLINE") != ""})
			if err != nil {
				return nil, withCode(exitIntern, err)
			}
			if v.stderr != nil {
				fmt.Fprintln(v.stderr, "modelseal: using the "+from)
			}
			sv.Trusted = tr
		}
		return sv, nil
	}
	return nil, usageErr("unknown verification method %q (want key, certificate or sigstore)", method)
}

// verifyModel verifies and maps errors to exit codes: 1 failed, 2 unreadable.
func verifyModel(ctx context.Context, stdout, stderr io.Writer, model, sigPath, method string, vf *verifierFlags) error {
	ver, err := vf.verifier(method)
	if err != nil {
		return err
	}
	if _, err := os.Stat(model); err != nil {
		return withCode(exitInput, fmt.Errorf("model: %w", err))
	}
	data, err := readInput("--signature", sigPath, verify.MaxBundleSize)
	if err != nil {
		return err
	}
	ign, err := resolveIgnores(model, vf.ignorePaths)
	if err != nil {
		return err
	}
	res, err := verify.Model(ctx, model, data, verify.Options{
		Verifier: ver, IgnorePaths: ign, IgnoreUnsigned: vf.ignoreUnsigned, SignaturePath: sigPath,
		Workers: vf.workers, Progress: progressBar(stderr),
	})
	switch {
	case err == nil:
	case errors.Is(err, verify.ErrFailed):
		return withCode(exitFail, fmt.Errorf("%s: %w", model, err))
	case errors.Is(err, verify.ErrBundle):
		return withCode(exitInput, fmt.Errorf("%s: %w", sigPath, err))
	default:
		return withCode(exitInput, err)
	}
	fmt.Fprintf(stdout, "verified %s: %d files, %s, root sha256:%x (%s signature)\n",
		model, len(res.Hashed.Set.Files), humanBytes(res.Hashed.Set.TotalSize()), res.Signed.RootDigest(), method)
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%d bytes", n)
}

func newVerifyCmd(stdout, stderr io.Writer) *cobra.Command {
	parent := &cobra.Command{
		Use:   "verify [key|certificate|sigstore] MODEL|REF",
		Short: "Verify a model against its OpenSSF Model Signing signature",
		Long: `Check the signature (model.sig by default) and signer, then hash the model and compare every
file with the signed manifest. Verification fails closed and lists every changed, missing
or extra file. Accepts signatures from model_signing 0.2 to 1.x. Keyless (sigstore) is the
default method and works offline with the embedded public-good trusted root.
MODEL may also be a registry reference or oci:DIR[:tag] (and not an existing path): the
signature attached to the manifest is checked against the layer digests, no blob downloaded
(--scan downloads and scans them; see modelseal pull).
Exit codes: 0 verified, 1 verification failed, 2 an input could not be read, 3 usage.`,
		Example: "  modelseal verify key --public-key key.pub model/\n  modelseal verify certificate --cert-chain ca.pem model/\n  modelseal verify sigstore --identity me@example.com --identity-provider https://accounts.google.com model/",
	}
	return withMethods(parent, func(method string) *cobra.Command { return newVerifyMethodCmd(stdout, stderr, method) })
}

func newVerifyMethodCmd(stdout, stderr io.Writer, method string) *cobra.Command {
	var (
		vf  = verifierFlags{stderr: stderr}
		sig string
		rf  registryFlags
		sc  scanFlags
	)
	cmd := &cobra.Command{
		Use:   method + " MODEL|REF",
		Short: "Verify a " + method + " signature",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			model := args[0]
			if isOCIRef(model) { // oci.go: registry or OCI layout reference
				return verifyRef(cmd.Context(), stdout, stderr, model, method, &vf, &rf, &sc)
			}
			if sig == "" {
				sig = defaultSignature(model)
			}
			return verifyModel(cmd.Context(), stdout, stderr, model, sig, method, &vf)
		},
	}
	vf.register(cmd.Flags(), method)
	rf.register(cmd.Flags())
	sc.register(cmd.Flags())
	cmd.Flags().StringVar(&sig, "signature", "", "the signature to check (default: model.sig in the model folder)")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
