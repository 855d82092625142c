package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/digest"
	"github.com/modelseal/modelseal/pkg/modelfs"
	"github.com/modelseal/modelseal/pkg/oms"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/report"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
	"github.com/modelseal/modelseal/sbom"
	"github.com/modelseal/modelseal/scanners/all"
)

// bomFlags are the flags of modelseal bom (and the BOM part of sign --bom).
type bomFlags struct {
	specVersion string
	timestamp   bool
	repoID      string
	policyFile  string
}

func (b *bomFlags) specVer() (cdx.SpecVersion, error) {
	v, err := sbom.ParseSpecVersion(b.specVersion)
	if err != nil {
		return 0, usageErr("--spec-version: %v", err)
	}
	return v, nil
}

// bomTimestamp is now, or SOURCE_DATE_EPOCH when it is set, as
// reproducible-build tools expect.
func bomTimestamp() (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, usageErr("SOURCE_DATE_EPOCH: %v", err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Now().UTC(), nil
}

// bomVerifier picks the verification method from the flags given: a public
// key, CA certificates, or a keyless identity. It returns nil when none is.
func bomVerifier(vf *verifierFlags) (verify.Verifier, error) {
	var methods []string
	if vf.publicKey != "" {
		methods = append(methods, "key")
	}
	if len(vf.certChain) > 0 {
		methods = append(methods, "certificate")
	}
	if vf.identity != "" || vf.identityRegex != "" || vf.issuer != "" || vf.issuerRegex != "" {
		methods = append(methods, "sigstore")
	}
	switch len(methods) {
	case 0:
		return nil, nil
	case 1:
		return vf.verifier(methods[0])
	}
	return nil, usageErr("give the verification material of one method only (%s)", strings.Join(methods, ", "))
}

// buildBOM scans the set, builds the BOM and writes it to output. sig may be
// nil. It prints the completeness and warnings on stderr.
func buildBOM(ctx context.Context, stdout, stderr io.Writer, src *sbom.Source, set *modelfs.Set, dg *digest.Result,
	sig *sbom.Signature, bf *bomFlags, output string, workers int) error {
	ver, err := bf.specVer()
	if err != nil {
		return err
	}
	pol := policy.Default()
	if bf.policyFile != "" {
		if err := extendPolicy(pol, bf.policyFile); err != nil {
			return withCode(exitUsage, err)
		}
	}
	scanned, err := sbom.ScanSet(ctx, set, scan.Options{Scanners: all.Scanners(), Policy: pol, Workers: workers})
	if err != nil {
		return withCode(exitIntern, err)
	}
	opts := sbom.Options{ToolVersion: report.Version, RepoID: bf.repoID}
	if bf.timestamp {
		if opts.Timestamp, err = bomTimestamp(); err != nil {
			return err
		}
	}
	res, err := sbom.Build(ctx, sbom.Input{Set: set, Digests: dg, Scan: scanned, Source: src, Signature: sig}, opts)
	if err != nil {
		return withCode(exitInput, err)
	}
	if err := writeOutput(stdout, output, func(w io.Writer) error { return sbom.Encode(w, res.BOM, ver) }); err != nil {
		return withCode(exitInput, err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "modelseal: warning:", w)
	}
	fmt.Fprintf(stderr, "bom: %s: %d files, model card completeness %.2f", set.Name, len(set.Files), res.Completeness)
	if len(res.Missing) > 0 {
		fmt.Fprintf(stderr, " (missing: %s)", strings.Join(res.Missing, ", "))
	}
	if n := len(scanned.Findings()); n > 0 {
		fmt.Fprintf(stderr, "; %d scan finding(s) recorded as vulnerabilities", n)
	}
	fmt.Fprintln(stderr)
	return nil
}

func newBOMCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		bf            bomFlags
		vf            = verifierFlags{stderr: stderr}
		output, sig   string
		revision      string
		ignorePaths   []string
		allowSymlinks bool
		workers       int
	)
	cmd := &cobra.Command{
		Use:   "bom PATH",
		Short: "Write a CycloneDX ML-BOM (AI bill of materials) for a model",
		Long: `Write a CycloneDX 1.6 JSON ML-BOM (1.7 with --spec-version 1.7) for a model folder, a single
model file, a Hugging Face cache entry (models--org--name, a snapshot folder or hf://org/name:
the snapshot of refs/main, or the newest) or an OCI image layout holding a ModelPack artifact,
offline. The model is a machine-learning-model component whose model card is filled from the
README front matter, config.json and the weight files' headers; every file is a component with
its SHA-256 (the digests signing computes); scan findings are vulnerabilities; a signature
(model.sig) is checked with the same flags as verify and recorded as properties. The output is
deterministic: no timestamp unless --timestamp, a serial number derived from the root digest.
Exit codes: 0 written, 1 the signature did not verify with the material given (the BOM is still
written, with modelseal:signature:verified=false), 2 an input could not be read, 3 usage.`,
		Example: "  modelseal bom model/ -o model.cdx.json\n  modelseal bom --public-key key.pub ~/.cache/huggingface/hub/models--org--name\n  modelseal bom --spec-version 1.7 --timestamp oci-layout/",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			path := args[0]
			if _, err := bf.specVer(); err != nil {
				return err
			}
			ver, err := bomVerifier(&vf)
			if err != nil {
				return err
			}
			ign, err := resolveIgnores(path, ignorePaths)
			if err != nil {
				return err
			}
			oo := sbom.OpenOptions{Files: modelfs.Options{Ignore: ign}, Revision: revision}
			if allowSymlinks {
				oo.Files.Symlinks = modelfs.FollowSymlinks
			}
			src, set, err := sbom.Open(path, oo)
			if err != nil {
				return withCode(exitInput, err)
			}
			if sig == "" {
				sig = defaultSignature(set.Root)
			}
			// The signature is not part of the model, as when signing.
			if rel := oms.SignatureIgnore(set.Root, sig); rel != "" && !set.SingleFile {
				kept := set.Files[:0:0]
				for _, f := range set.Files {
					if f.Name != rel {
						kept = append(kept, f)
					}
				}
				set.Files = kept
				set.Ignored = append(set.Ignored, rel)
			}
			dg, err := digest.Compute(ctx, set, digest.Options{Workers: workers, Progress: progressBar(stderr)})
			if err != nil {
				return withCode(exitInput, err)
			}
			var sigInfo *sbom.Signature
			var sigErr error
			if _, err := os.Stat(sig); err == nil {
				data, err := readInput("--signature", sig, verify.MaxBundleSize)
				if err != nil {
					return err
				}
				sigInfo, sigErr = sbom.CheckSignature(ctx, set, dg, data, sig, ver)
				if sigErr != nil && ver == nil {
					fmt.Fprintf(stderr, "modelseal: warning: %s: %v\n", sig, sigErr)
					sigErr = nil
				}
			} else if ver != nil {
				return withCode(exitInput, fmt.Errorf("--signature: %w", err))
			}
			if err := buildBOM(ctx, stdout, stderr, src, set, dg, sigInfo, &bf, output, workers); err != nil {
				return err
			}
			if sigErr != nil {
				if errors.Is(sigErr, verify.ErrBundle) {
					return withCode(exitInput, fmt.Errorf("%s: %w", sig, sigErr))
				}
				return withCode(exitFail, fmt.Errorf("%s: %w", sig, sigErr))
			}
			return nil
		},
	}
	f := cmd.Flags()
	bf.register(f)
	f.StringVarP(&output, "output", "o", "", "write the BOM to FILE (atomically) instead of standard output")
	f.StringVar(&sig, "signature", "", "the model's signature (default: model.sig in the model folder, or next to a single file)")
	f.StringVar(&revision, "revision", "", "Hugging Face cache revision: a ref under refs/ or a snapshot commit (default: refs/main, or the newest snapshot)")
	f.StringSliceVar(&ignorePaths, "ignore-paths", nil, "paths to leave out, relative to the model; repeatable")
	f.BoolVar(&allowSymlinks, "allow-symlinks", false, "follow symbolic links to files inside the model (Hugging Face snapshots always follow theirs)")
	f.IntVar(&workers, "workers", 0, "parallel hashing and scanning workers (default: all cores)")
	f.StringVar(&vf.publicKey, "public-key", "", "verify model.sig with this PEM EC public key")
	f.StringSliceVar(&vf.certChain, "cert-chain", nil, "verify model.sig against these PEM CA certificates; repeatable")
	f.StringVar(&vf.identity, "identity", "", "verify a keyless model.sig: expected signer identity (certificate SAN), exact")
	f.StringVar(&vf.identityRegex, "identity-regex", "", "expected keyless signer identity, as a regular expression")
	f.StringVar(&vf.issuer, "identity-provider", "", "expected OIDC issuer of a keyless signature, exact")
	f.StringVar(&vf.issuerRegex, "identity-provider-regex", "", "expected OIDC issuer, as a regular expression")
	f.StringVar(&vf.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json (default: the embedded public-good root)")
	f.SetNormalizeFunc(normalizeFlag)
	return cmd
}

func (b *bomFlags) register(f interface {
	StringVar(p *string, name, value, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}) {
	f.StringVar(&b.specVersion, "spec-version", "1.6", "CycloneDX version: 1.6 or 1.7")
	f.BoolVar(&b.timestamp, "timestamp", false, "record the time (or SOURCE_DATE_EPOCH) in metadata.timestamp; without it the output is reproducible")
	f.StringVar(&b.repoID, "repo-id", "", "Hugging Face repository id (org/name) of the model, when the path does not say it")
	f.StringVar(&b.policyFile, "policy", "", "scan policy FILE that extends the built-in allow and deny lists")
}

// signBOM writes the BOM of a model just signed, from the digests signing
// computed (when they are whole-file SHA-256, the default; otherwise the
// model is hashed once more with SHA-256). A key signature is checked with
// the signing key's public half; certificate and keyless signatures are
// recorded as made in this run, not verified against trust material.
func signBOM(ctx context.Context, stdout, stderr io.Writer, h *oms.Hashed, bundle []byte, sigPath, method string,
	sf *signerFlags, output string, workers int) error {
	dg := h.Digests
	if dg.Algorithm != digest.SHA256 || dg.ShardSize != 0 {
		fmt.Fprintln(stderr, "modelseal: note: the BOM records whole-file sha256 digests; hashing the model again")
		var err error
		if dg, err = digest.Compute(ctx, h.Set, digest.Options{Workers: workers, Progress: progressBar(stderr)}); err != nil {
			return withCode(exitInput, err)
		}
	}
	var ver verify.Verifier
	if method == "key" {
		data, err := readInput("--private-key", sf.privateKey, sign.MaxKeyFileSize)
		if err != nil {
			return err
		}
		priv, err := sign.ParsePrivateKey(data, []byte(sf.password))
		if err != nil {
			return withCode(exitInput, fmt.Errorf("--private-key %s: %w", sf.privateKey, err))
		}
		ver = &verify.KeyVerifier{Key: &priv.PublicKey}
	}
	sig, err := sbom.CheckSignature(ctx, h.Set, dg, bundle, sigPath, ver)
	if err != nil {
		return withCode(exitIntern, fmt.Errorf("checking the signature just made: %w", err))
	}
	if ver == nil {
		sig.Detail = "made in this run; not verified against trust material (use modelseal bom with verification flags)"
	}
	bf := bomFlags{specVersion: "1.6"}
	return buildBOM(ctx, stdout, stderr, nil, h.Set, dg, sig, &bf, output, workers)
}
