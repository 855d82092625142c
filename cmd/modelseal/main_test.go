package main

import (
	"os"
	"testing"
)

// TestMain keeps the CLI tests hermetic: keyless verification uses the
// embedded public-good trusted root instead of refreshing it through TUF.
func TestMain(m *testing.M) {
	os.Setenv("MODELSEAL_OFFLINE", "1")
	os.Exit(m.Run())
}
