package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/report"
	"github.com/modelseal/modelseal/pkg/scan"
	"github.com/modelseal/modelseal/scanners/all"
)

func newScanCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		format     string
		output     string
		failOn     string
		policyFile string
		workers    int
	)
	cmd := &cobra.Command{
		Use:   "scan PATH...",
		Short: "Scan model files and folders for code that runs on load",
		Long: `Scan files and folders (recursively) without loading or executing them. Every file is
recognised by its content, whatever its name. Exit codes: 0 nothing at or above --fail-on,
1 a finding at or above it, 2 a file could not be scanned, 3 a usage or policy error.`,
		Example: "  modelseal scan model.pt\n  modelseal scan --format sarif --output scan.sarif models/",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			threshold, err := finding.ParseSeverity(failOn)
			if err != nil {
				return usageErr("--fail-on: %v", err)
			}
			render, err := report.Renderer(format)
			if err != nil {
				return usageErr("--format: %v", err)
			}
			pol := policy.Default()
			if policyFile != "" {
				if err := extendPolicy(pol, policyFile); err != nil {
					return withCode(exitUsage, err)
				}
			}
			res, err := scan.Run(cmd.Context(), args, scan.Options{
				Scanners: all.Scanners(),
				Policy:   pol,
				Workers:  workers,
				Progress: progressBar(stderr),
			})
			if err != nil {
				return withCode(exitIntern, err)
			}
			if err := writeOutput(stdout, output, func(w io.Writer) error {
				return render(w, res, report.Options{FailOn: threshold})
			}); err != nil {
				return withCode(exitUsage, err)
			}
			if code := res.ExitCode(threshold); code != scan.ExitClean {
				return withCode(code, fmt.Errorf(""))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "text", "report format: text, json or sarif")
	f.StringVarP(&output, "output", "o", "", "write the report to FILE (atomically) instead of standard output")
	f.StringVar(&failOn, "fail-on", "medium", "lowest severity that fails the run: critical, high, medium, low or info")
	f.StringVar(&policyFile, "policy", "", "YAML or JSON policy FILE that extends the built-in allow and deny lists")
	f.IntVar(&workers, "workers", 0, "files scanned at once (default: the number of CPUs)")
	return cmd
}

// extendPolicy adds a user's policy file to pol.
func extendPolicy(pol *policy.Policy, path string) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	defer fh.Close()
	pf, err := policy.Load(fh)
	if err != nil {
		return fmt.Errorf("--policy %s: %w", path, err)
	}
	if err := pol.Extend(pf); err != nil {
		return fmt.Errorf("--policy %s: %w", path, err)
	}
	return nil
}
