// Command modelseal scans, hashes, signs and verifies machine-learning
// models. Each subcommand is a thin layer over the packages under pkg/,
// scanners/ and sbom/; see README.md for the user's guide.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command. Commands with a verdict (scan, verify)
// use 0 for a pass and 1 for a fail; 2 means an input could not be read or
// parsed; 3 means the command line or a configuration file is wrong.
const (
	exitOK     = 0
	exitFail   = 1
	exitInput  = 2
	exitUsage  = 3
	exitIntern = 4
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err so that the process exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageErr formats a command-line mistake (exit 3).
func usageErr(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "modelseal:", ee.err)
		}
		return ee.code
	}
	// cobra's own errors are about flags and arguments.
	fmt.Fprintln(stderr, "modelseal:", err)
	return exitUsage
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "modelseal",
		Short:         "Scan, hash, sign and verify machine-learning models",
		Long:          "modelseal stands between model files and the code that loads them: it scans them statically\n(never loading or unpickling them), hashes and signs model folders in the OpenSSF Model Signing\nformat, and verifies them before use.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	for _, add := range commands {
		root.AddCommand(add(stdout, stderr))
	}
	return root
}

// commands lists the subcommand constructors; each command's file adds its
// own in an init-free way by appearing here.
var commands = []func(stdout, stderr io.Writer) *cobra.Command{
	newScanCmd,
	newHashCmd,
	newSignCmd,
	newVerifyCmd,
	newOMSCmd,
	newBOMCmd,
	newPushCmd,
	newPullCmd,
	newAttachCmd,
}
