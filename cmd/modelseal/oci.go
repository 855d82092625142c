package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/oci"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/report"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/pkg/sign"
	"github.com/modelseal/modelseal/pkg/verify"
	"github.com/modelseal/modelseal/scanners/all"
)

// registryFlags are the connection flags of every command that takes a REF.
type registryFlags struct {
	plainHTTP bool
}

func (r *registryFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&r.plainHTTP, "plain-http", false, "talk plain HTTP to the registry (loopback test registries only)")
}

// open opens REF; credentials come from the Docker configuration and its
// credential helpers.
func (r *registryFlags) open(ctx context.Context, ref string, create bool) (*oci.Repo, error) {
	repo, err := oci.Open(ctx, ref, oci.OpenOptions{PlainHTTP: r.plainHTTP, CreateLayout: create})
	if err != nil {
		return nil, withCode(exitInput, err)
	}
	return repo, nil
}

// isOCIRef reports whether a command-line argument goes the OCI way: it is
// oci:DIR[:tag] or reads as a registry reference, and is not an existing
// local path.
func isOCIRef(arg string) bool {
	if !oci.LooksLikeRef(arg) {
		return false
	}
	_, err := os.Lstat(arg)
	return err != nil
}

// scanFlags run the scanner over downloaded blobs (verify --scan, pull --scan).
type scanFlags struct {
	scan       bool
	failOn     string
	policyFile string
}

func (s *scanFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&s.scan, "scan", false, "download the blobs and scan them (never loaded) before accepting the model")
	fs.StringVar(&s.failOn, "fail-on", "medium", "with --scan: lowest severity that fails: critical, high, medium, low or info")
	fs.StringVar(&s.policyFile, "policy", "", "with --scan: YAML or JSON policy FILE that extends the built-in lists")
}

// check returns the pull hook that scans the downloaded model, or nil.
func (s *scanFlags) check(stderr io.Writer, workers int) (func(ctx context.Context, dir string) error, error) {
	if !s.scan {
		return nil, nil
	}
	threshold, err := finding.ParseSeverity(s.failOn)
	if err != nil {
		return nil, usageErr("--fail-on: %v", err)
	}
	pol := policy.Default()
	if s.policyFile != "" {
		if err := extendPolicy(pol, s.policyFile); err != nil {
			return nil, withCode(exitUsage, err)
		}
	}
	return func(ctx context.Context, dir string) error {
		res, err := scan.Run(ctx, []string{dir}, scan.Options{Scanners: all.Scanners(), Policy: pol, Workers: workers})
		if err != nil {
			return err
		}
		if code := res.ExitCode(threshold); code != scan.ExitClean {
			_ = report.Text(stderr, res, report.Options{FailOn: threshold})
			return withCode(code, fmt.Errorf("scan failed (exit %d): the model was not accepted", code))
		}
		return nil
	}, nil
}

// ociErr maps pkg/oci errors to exit codes: 1 for a failed verification or
// a refused artifact (unsafe manifest, blob not matching its digest), 2 for
// anything that could not be read.
func ociErr(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return withCode(ee.code, err)
	case errors.Is(err, verify.ErrFailed), errors.Is(err, oci.ErrInvalid), errors.Is(err, oci.ErrDigest):
		return withCode(exitFail, err)
	}
	return withCode(exitInput, err)
}

// signFlags select a signer for push and attach: --sign[=METHOD] with the
// key material flags of `modelseal sign`.
type signFlags struct {
	method string
	sf     signerFlags
	bom    string
}

func (s *signFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.method, "sign", "", "sign the model and attach the signature: key, certificate or sigstore (bare --sign picks from the flags given)")
	fs.Lookup("sign").NoOptDefVal = "auto"
	s.sf.register(fs, "")
	fs.StringVar(&s.bom, "bom", "", "attach a CycloneDX BOM: this JSON `FILE` (made by modelseal bom); push with a bare --bom builds it from the folder")
	fs.Lookup("bom").NoOptDefVal = bomGenerate
}

// bomGenerate is the value of a bare --bom: build the BOM from the folder.
const bomGenerate = "(generate)"

// signer returns nil when --sign was not given.
func (s *signFlags) signer(ctx context.Context) (sign.Signer, string, error) {
	method := s.method
	switch method {
	case "":
		if s.sf.privateKey != "" || s.sf.signingCert != "" || s.sf.identityToken != "" {
			return nil, "", usageErr("signing flags given without --sign")
		}
		return nil, "", nil
	case "auto":
		switch {
		case s.sf.signingCert != "":
			method = "certificate"
		case s.sf.privateKey != "":
			method = "key"
		default:
			method = "sigstore"
		}
	}
	sg, err := s.sf.signer(ctx, method)
	return sg, method, err
}

// readBOM reads --bom FILE; it returns nil for no --bom or a bare --bom.
func (s *signFlags) readBOM() ([]byte, error) {
	if s.bom == "" || s.bom == bomGenerate {
		return nil, nil
	}
	return readInput("--bom", s.bom, oci.MaxBOMSize)
}

// verifyMethod picks the verification method from the flags given (pull).
func verifyMethod(vf *verifierFlags) string {
	switch {
	case vf.publicKey != "":
		return "key"
	case len(vf.certChain) > 0:
		return "certificate"
	case vf.identity != "" || vf.identityRegex != "":
		return "sigstore"
	}
	return ""
}

// createdTime parses --created, falling back to $SOURCE_DATE_EPOCH, then to
// oci.DefaultCreated (reproducible manifests).
func createdTime(flag string) (time.Time, error) {
	if flag != "" {
		t, err := time.Parse(time.RFC3339, flag)
		if err != nil {
			return time.Time{}, usageErr("--created: %v (want RFC 3339, e.g. 2025-01-02T15:04:05Z)", err)
		}
		return t, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, usageErr("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return oci.DefaultCreated, nil
}

// verifyRef is `modelseal verify REF`: the signature and the layer digests,
// from the manifest alone; blobs are downloaded (into a temporary folder,
// removed afterwards) only with --scan or when the artifact's layers are not
// one file each.
func verifyRef(ctx context.Context, stdout, stderr io.Writer, ref, method string, vf *verifierFlags, rf *registryFlags, sc *scanFlags) error {
	ver, err := vf.verifier(method)
	if err != nil {
		return err
	}
	check, err := sc.check(stderr, vf.workers)
	if err != nil {
		return err
	}
	repo, err := rf.open(ctx, ref, false)
	if err != nil {
		return err
	}
	opts := oci.VerifyOptions{Verifier: ver, IgnorePaths: vf.ignorePaths, IgnoreUnsigned: vf.ignoreUnsigned}
	v, err := oci.Verify(ctx, repo, opts)
	if err != nil {
		return ociErr(err)
	}
	how := "from the layer digests, no blob downloaded"
	if v.NeedsContent || check != nil {
		tmp, err := os.MkdirTemp("", "modelseal-verify-*")
		if err != nil {
			return withCode(exitInput, err)
		}
		defer os.RemoveAll(tmp)
		if _, err := oci.Pull(ctx, repo, tmp+"/model", oci.PullOptions{Verify: &opts, Check: check, Progress: progressBar(stderr)}); err != nil {
			return ociErr(err)
		}
		how = "blobs downloaded and checked"
		if check != nil {
			how += ", scanned"
		}
	}
	var size int64
	for _, l := range v.Artifact.Layers {
		size += l.Descriptor.Size
	}
	fmt.Fprintf(stdout, "verified %s@%s: %d files, %s, root sha256:%x (%s signature, %s)\n",
		ref, v.Artifact.Descriptor.Digest, len(v.Signed.Resources), humanBytes(size), v.Signed.RootDigest(), method, how)
	return nil
}

// exactArgs is cobra.ExactArgs with a hint for the optional-value flags:
// "--bom FILE" and "--sign key" must be written "--bom=FILE", "--sign=key".
func exactArgs(n int, sg *signFlags) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n && (sg.bom == bomGenerate || sg.method == "auto") {
			return usageErr("accepts %d argument(s), received %d: write --bom=FILE and --sign=METHOD with an equals sign", n, len(args))
		}
		return cobra.ExactArgs(n)(cmd, args)
	}
}
