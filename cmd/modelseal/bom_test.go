package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelseal/modelseal/sbom/cdxschema"
)

const (
	bomFixture = "../../fixtures/bom/hf-model"
	bomKeys    = "../../testdata/model-signing/keys/certificate"
)

var bomValidator = sync.OnceValues(func() (*cdxschema.Validator, error) { return cdxschema.New("../../testdata/cyclonedx") })

// validBOM validates a BOM against the official schema and decodes it.
func validBOM(t *testing.T, data []byte) map[string]any {
	t.Helper()
	v, err := bomValidator()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(data); err != nil {
		t.Fatalf("schema: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// modelProps returns the model component's properties.
func modelProps(doc map[string]any) map[string]string {
	out := map[string]string{}
	comp := doc["metadata"].(map[string]any)["component"].(map[string]any)
	for _, p := range comp["properties"].([]any) {
		pm := p.(map[string]any)
		out[pm["name"].(string)] = pm["value"].(string)
	}
	return out
}

// copyFixture copies the BOM fixture folder.
func copyFixture(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	entries, err := os.ReadDir(bomFixture)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(bomFixture, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBOMCommand drives modelseal bom: output, versions, determinism,
// timestamps, signatures and exit codes.
func TestBOMCommand(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	model := copyFixture(t)
	out := filepath.Join(t.TempDir(), "bom.json")
	pub := filepath.Join(bomKeys, "signing-key-pub.pem")
	steps := []struct {
		name  string
		args  []string
		code  int
		want  string // in stderr
		check func(t *testing.T, stdout string)
	}{
		{"stdout 1.6", []string{"bom", "--repo-id", "org/tiny", model}, 0, "completeness 1.00", func(t *testing.T, s string) {
			doc := validBOM(t, []byte(s))
			if doc["specVersion"] != "1.6" || doc["metadata"].(map[string]any)["timestamp"] != nil {
				t.Errorf("specVersion %v, timestamp %v", doc["specVersion"], doc["metadata"].(map[string]any)["timestamp"])
			}
		}},
		{"file 1.7", []string{"bom", "--spec-version", "1.7", "-o", out, model}, 0, "", func(t *testing.T, s string) {
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if doc := validBOM(t, data); doc["specVersion"] != "1.7" || s != "" {
				t.Errorf("specVersion %v, stdout %q", doc["specVersion"], s)
			}
		}},
		{"bad spec version", []string{"bom", "--spec-version", "1.5", model}, 3, "1.6 or 1.7", nil},
		{"missing model", []string{"bom", model + ".nope"}, 2, "no such file", nil},
		{"two verification methods", []string{"bom", "--public-key", pub, "--identity", "a@b", model}, 3, "one method", nil},
		{"public key but no signature", []string{"bom", "--public-key", pub, model}, 2, "--signature", nil},
		{"sign", []string{"sign", "key", "--private-key", filepath.Join(bomKeys, "signing-key.pem"), model}, 0, "", nil},
		{"signature present, no material", []string{"bom", model}, 0, "", func(t *testing.T, s string) {
			p := modelProps(validBOM(t, []byte(s)))
			if p["modelseal:signature:verified"] != "false" || p["modelseal:signature:method"] != "key" || !strings.Contains(p["modelseal:signature:detail"], "no verification material") {
				t.Errorf("properties %v", p)
			}
		}},
		{"signature verified", []string{"bom", "--public-key", pub, model}, 0, "", func(t *testing.T, s string) {
			doc := validBOM(t, []byte(s))
			p := modelProps(doc)
			if p["modelseal:signature:verified"] != "true" || !strings.HasPrefix(p["modelseal:signature:identity"], "public key sha256:") {
				t.Errorf("properties %v", p)
			}
			for _, c := range doc["components"].([]any) {
				if c.(map[string]any)["name"] == "model.sig" {
					t.Error("model.sig listed as a model file")
				}
			}
		}},
	}
	for _, s := range steps {
		code, stdout, stderr := runCLI(s.args...)
		if code != s.code || !strings.Contains(stderr, s.want) {
			t.Errorf("%s: exit %d, want %d; stderr %q (want %q)", s.name, code, s.code, stderr, s.want)
			continue
		}
		if s.check != nil {
			s.check(t, stdout)
		}
	}

	// Same input, same bytes; --timestamp opts in (SOURCE_DATE_EPOCH honoured).
	_, a, _ := runCLI("bom", model)
	_, b, _ := runCLI("bom", model)
	if a != b {
		t.Error("two runs differ")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	_, ts, _ := runCLI("bom", "--timestamp", model)
	if !strings.Contains(ts, `"timestamp": "2026-01-01T00:00:00Z"`) {
		t.Error("--timestamp with SOURCE_DATE_EPOCH: no metadata.timestamp 2026-01-01T00:00:00Z")
	}

	// A changed file: exit 1, the BOM is still written and says so.
	os.WriteFile(filepath.Join(model, "config.json"), []byte(`{"model_type":"changed"}`), 0o644)
	code, stdout, stderr := runCLI("bom", "--public-key", pub, model)
	if code != 1 || !strings.Contains(stderr, "changed: config.json") {
		t.Fatalf("tampered: exit %d, stderr %q", code, stderr)
	}
	if p := modelProps(validBOM(t, []byte(stdout))); p["modelseal:signature:verified"] != "false" {
		t.Errorf("tampered: properties %v", p)
	}
	if !bytes.Contains([]byte(stdout), []byte(`"bomFormat": "CycloneDX"`)) {
		t.Error("no BOM on a failed verification")
	}
}

// TestSignWithBOM checks sign --bom writes a valid BOM from the signing
// digests, with the signature verified by the key's public half, and the
// same file digests as modelseal bom.
func TestSignWithBOM(t *testing.T) {
	model := copyFixture(t)
	out := filepath.Join(t.TempDir(), "bom.json")
	code, _, stderr := runCLI("sign", "key", "--private-key", filepath.Join(bomKeys, "signing-key.pem"), "--bom", out, model)
	if code != 0 {
		t.Fatalf("sign --bom: exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	doc := validBOM(t, data)
	if p := modelProps(doc); p["modelseal:signature:verified"] != "true" || p["modelseal:signature:method"] != "key" {
		t.Errorf("properties %v", p)
	}
	_, alone, _ := runCLI("bom", model)
	hashes := func(doc map[string]any) string {
		var b strings.Builder
		for _, c := range doc["components"].([]any) {
			cm := c.(map[string]any)
			if hs, ok := cm["hashes"].([]any); ok {
				b.WriteString(cm["name"].(string) + "=" + hs[0].(map[string]any)["content"].(string) + "\n")
			}
		}
		return b.String()
	}
	if h1, h2 := hashes(doc), hashes(validBOM(t, []byte(alone))); h1 != h2 || h1 == "" {
		t.Errorf("sign --bom digests\n%s\ndiffer from bom's\n%s", h1, h2)
	}
	// Sharded BLAKE3 signing: the BOM still gets whole-file sha256.
	code, _, stderr = runCLI("sign", "key", "--private-key", filepath.Join(bomKeys, "signing-key.pem"), "--hash-algorithm", "blake3", "--shard-size", "100", "--bom", out, model)
	if code != 0 || !strings.Contains(stderr, "hashing the model again") {
		t.Fatalf("sign --bom blake3: exit %d: %s", code, stderr)
	}
	data, _ = os.ReadFile(out)
	if h := hashes(validBOM(t, data)); h != hashes(doc) {
		t.Errorf("blake3-signed BOM digests differ:\n%s", h)
	}
}
