package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/sign"
)

// modelSigningFlagNames maps model_signing's flag spellings to ours, so that
// its command lines work unchanged (--private_key, --certificate_chain...).
var modelSigningFlagNames = map[string]string{
	"signing_certificate": "signing-cert",
	"signing-certificate": "signing-cert",
	"certificate_chain":   "cert-chain",
	"certificate-chain":   "cert-chain",
	"identity_provider":   "identity-provider",
}

func normalizeFlag(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := modelSigningFlagNames[name]; ok {
		return pflag.NormalizedName(n)
	}
	return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
}

// hashFlags are the listing and hashing flags shared by hash and sign.
type hashFlags struct {
	ignorePaths   []string
	ignoreGit     bool
	allowSymlinks bool
	algorithm     string
	shardSize     int64
	workers       int
}

func (h *hashFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&h.ignorePaths, "ignore-paths", nil, "paths to leave out, relative to the model (or to the working directory when they point inside the model); repeatable")
	fs.BoolVar(&h.ignoreGit, "ignore-git-paths", true, "leave out .git, .gitattributes, .github and .gitignore at the top level")
	fs.BoolVar(&h.allowSymlinks, "allow-symlinks", false, "follow symbolic links to files inside the model (refused by default)")
	fs.StringVar(&h.algorithm, "hash-algorithm", "sha256", "sha256, blake2b or blake3 (modelseal extension)")
	fs.Int64Var(&h.shardSize, "shard-size", 0, "hash files in shards of this many bytes (0: whole files; model_signing's default shard size is 1000000000)")
	fs.IntVar(&h.workers, "workers", 0, "parallel hashing workers (default: all cores)")
}

// resolveIgnores turns the user's ignore paths into model-relative ones.
func resolveIgnores(model string, paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		r, err := modelfs.ResolveIgnorePath(model, p)
		if err != nil {
			return nil, usageErr("--ignore-paths: %v", err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (h *hashFlags) options(model, sigPath string, stderr io.Writer) (oms.HashOptions, error) {
	alg, err := digest.ParseAlgorithm(h.algorithm)
	if err != nil {
		return oms.HashOptions{}, usageErr("--hash-algorithm: %v", err)
	}
	if h.shardSize < 0 {
		return oms.HashOptions{}, usageErr("--shard-size must not be negative")
	}
	ign, err := resolveIgnores(model, h.ignorePaths)
	if err != nil {
		return oms.HashOptions{}, err
	}
	o := oms.HashOptions{
		Files:         modelfs.Options{Ignore: ign, NoDefaultIgnores: !h.ignoreGit},
		Digest:        digest.Options{Algorithm: alg, ShardSize: h.shardSize, Workers: h.workers, Progress: progressBar(stderr)},
		SignaturePath: sigPath,
	}
	if h.allowSymlinks {
		o.Files.Symlinks = modelfs.FollowSymlinks
	}
	return o, nil
}

// defaultSignature is model.sig in the model folder, or next to a
// single-file model.
func defaultSignature(model string) string {
	if fi, err := os.Stat(model); err == nil && !fi.IsDir() {
		return filepath.Join(filepath.Dir(model), "model.sig")
	}
	return filepath.Join(model, "model.sig")
}

// readInput reads a small input file (key, certificate, config) for a flag.
func readInput(flag, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, withCode(exitInput, fmt.Errorf("%s: %w", flag, err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, withCode(exitInput, fmt.Errorf("%s %s: %w", flag, path, err))
	}
	if int64(len(data)) > limit {
		return nil, withCode(exitInput, fmt.Errorf("%s %s: larger than %d bytes", flag, path, limit))
	}
	return data, nil
}

func readCerts(flag string, paths []string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		data, err := readInput(flag, p, sign.MaxKeyFileSize)
		if err != nil {
			return nil, err
		}
		certs, err := sign.ParseCertificates(data)
		if err != nil {
			return nil, withCode(exitInput, fmt.Errorf("%s %s: %w", flag, p, err))
		}
		out = append(out, certs...)
	}
	return out, nil
}

// signerFlags are the key material flags of every signing method.
type signerFlags struct {
	privateKey    string
	password      string
	signingCert   string
	certChain     []string
	identityToken string
	trustConfig   string
}

func (s *signerFlags) register(fs *pflag.FlagSet, method string) {
	if method == "key" || method == "certificate" || method == "" {
		fs.StringVar(&s.privateKey, "private-key", "", "PEM EC private key (P-256, P-384 or P-521)")
		fs.StringVar(&s.password, "password", "", "password of an encrypted private key")
	}
	if method == "certificate" || method == "" {
		fs.StringVar(&s.signingCert, "signing-cert", "", "PEM certificate of the private key (leaf)")
		fs.StringSliceVar(&s.certChain, "cert-chain", nil, "PEM intermediate certificates to put in the signature; repeatable")
	}
	if method == "sigstore" || method == "" {
		fs.StringVar(&s.identityToken, "identity-token", "", "OIDC identity token (default: $SIGSTORE_ID_TOKEN, then GitHub Actions ambient credentials)")
		fs.StringVar(&s.trustConfig, "trust-config", "", "Sigstore client trust config (signing config + trusted root) of a private instance (default: public good)")
	}
}

// signer builds the signer of a method from the flags.
func (s *signerFlags) signer(ctx context.Context, method string) (sign.Signer, error) {
	switch method {
	case "key", "certificate":
		if s.privateKey == "" {
			return nil, usageErr("--private-key is required for %s signing", method)
		}
		data, err := readInput("--private-key", s.privateKey, sign.MaxKeyFileSize)
		if err != nil {
			return nil, err
		}
		priv, err := sign.ParsePrivateKey(data, []byte(s.password))
		if err != nil {
			if errors.Is(err, sign.ErrPassword) {
				return nil, usageErr("--private-key %s: %v (use --password)", s.privateKey, err)
			}
			return nil, withCode(exitInput, fmt.Errorf("--private-key %s: %w", s.privateKey, err))
		}
		if method == "key" {
			ks, err := sign.NewKeySigner(priv)
			if err != nil {
				return nil, withCode(exitInput, err)
			}
			return ks, nil
		}
		if s.signingCert == "" {
			return nil, usageErr("--signing-cert is required for certificate signing")
		}
		leaf, err := readCerts("--signing-cert", []string{s.signingCert})
		if err != nil {
			return nil, err
		}
		chain, err := readCerts("--cert-chain", s.certChain)
		if err != nil {
			return nil, err
		}
		cs, err := sign.NewCertificateSigner(priv, leaf[0], chain)
		if err != nil {
			return nil, withCode(exitInput, err)
		}
		return cs, nil
	case "sigstore":
		tok, err := sign.IdentityToken(ctx, s.identityToken, nil, nil)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		opts := sign.SigstoreOptions{IDToken: tok}
		if s.trustConfig != "" {
			data, err := readInput("--trust-config", s.trustConfig, sign.MaxConfigSize)
			if err != nil {
				return nil, err
			}
			sc, tr, err := sign.ParseTrustConfig(data)
			if err != nil {
				return nil, usageErr("--trust-config %s: %v", s.trustConfig, err)
			}
			opts.SigningConfig = sc
			if tr != nil {
				opts.TrustedMaterial = tr
				opts.RekorVersions = []uint32{1, 2}
			}
		}
		ss, err := sign.NewSigstoreSigner(opts)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		return ss, nil
	}
	return nil, usageErr("unknown signing method %q (want key, certificate or sigstore)", method)
}

// signModel hashes the model, signs it and writes the bundle atomically.
func signModel(ctx context.Context, stdout, stderr io.Writer, model, sigPath string, hf *hashFlags, signer sign.Signer) error {
	_, _, err := hashAndSign(ctx, stdout, stderr, model, sigPath, hf, signer)
	return err
}

// hashAndSign is signModel returning the hashed model and the bundle, for
// callers that reuse the digests (sign --bom).
func hashAndSign(ctx context.Context, stdout, stderr io.Writer, model, sigPath string, hf *hashFlags, signer sign.Signer) (*oms.Hashed, []byte, error) {
	opts, err := hf.options(model, sigPath, stderr)
	if err != nil {
		return nil, nil, err
	}
	h, err := oms.HashModel(ctx, model, opts)
	if err != nil {
		return nil, nil, withCode(exitInput, err)
	}
	data, err := sign.Model(ctx, h.Manifest, signer)
	if err != nil {
		return nil, nil, withCode(exitFail, fmt.Errorf("signing %s: %w", model, err))
	}
	if err := writeFileAtomic(sigPath, func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	}); err != nil {
		return nil, nil, withCode(exitInput, err)
	}
	fmt.Fprintf(stdout, "signed %s: %d files, %d bytes, root sha256:%x -> %s\n",
		h.Set.Name, len(h.Set.Files), h.Set.TotalSize(), h.Manifest.RootDigest(), sigPath)
	return h, data, nil
}

func newSignCmd(stdout, stderr io.Writer) *cobra.Command {
	parent := &cobra.Command{
		Use:   "sign [key|certificate|sigstore] MODEL",
		Short: "Sign a model folder or file in the OpenSSF Model Signing format",
		Long: `Hash every file of a model and sign the manifest into a Sigstore bundle (model.sig by default,
inside the model folder or next to a single-file model), exactly as model_signing 1.x does.
Methods: key (EC private key), certificate (private key + certificate chain), sigstore
(keyless, the default: Fulcio, Rekor and a timestamp authority). Exit codes: 0 signed,
1 signing failed, 2 an input could not be read, 3 usage.`,
		Example: "  modelseal sign key --private-key key.pem model/\n  modelseal sign certificate --private-key key.pem --signing-cert leaf.pem --cert-chain int.pem model/\n  modelseal sign model/   # keyless, token from SIGSTORE_ID_TOKEN or GitHub Actions",
	}
	return withMethods(parent, func(method string) *cobra.Command { return newSignMethodCmd(stdout, stderr, method) })
}

// withMethods gives parent one subcommand per method (key, certificate,
// sigstore) and makes "parent MODEL" the keyless one, as model_signing's
// CLI does.
func withMethods(parent *cobra.Command, newMethod func(method string) *cobra.Command) *cobra.Command {
	for _, method := range []string{"key", "certificate", "sigstore"} {
		parent.AddCommand(newMethod(method))
	}
	def := newMethod("sigstore")
	parent.Flags().AddFlagSet(def.Flags())
	parent.Args = cobra.ExactArgs(1)
	parent.RunE = def.RunE
	parent.SetGlobalNormalizationFunc(normalizeFlag)
	return parent
}

func newSignMethodCmd(stdout, stderr io.Writer, method string) *cobra.Command {
	var (
		hf     hashFlags
		sf     signerFlags
		sig    string
		bomOut string
	)
	cmd := &cobra.Command{
		Use:   method + " MODEL",
		Short: "Sign with " + map[string]string{"key": "an EC private key", "certificate": "a private key and its certificate chain", "sigstore": "Sigstore keyless signing"}[method],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			model := args[0]
			if _, err := os.Stat(model); err != nil {
				return withCode(exitInput, fmt.Errorf("model: %w", err))
			}
			if sig == "" {
				sig = defaultSignature(model)
			}
			signer, err := sf.signer(cmd.Context(), method)
			if err != nil {
				return err
			}
			if bomOut != "" {
				h, bundle, err := hashAndSign(cmd.Context(), stdout, stderr, model, sig, &hf, signer)
				if err != nil {
					return err
				}
				return signBOM(cmd.Context(), stdout, stderr, h, bundle, sig, method, &sf, bomOut, hf.workers)
			}
			return signModel(cmd.Context(), stdout, stderr, model, sig, &hf, signer)
		},
	}
	hf.register(cmd.Flags())
	sf.register(cmd.Flags(), method)
	cmd.Flags().StringVar(&bomOut, "bom", "", "also write a CycloneDX ML-BOM of the model to FILE, from the digests just computed (see modelseal bom)")
	cmd.Flags().StringVar(&sig, "signature", "", "where to write the signature (default: model.sig in the model folder)")
	cmd.Flags().SetNormalizeFunc(normalizeFlag)
	return cmd
}
