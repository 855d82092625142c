// Package cdxschema validates CycloneDX JSON documents against the official
// CycloneDX JSON schemas (bom-1.6 and bom-1.7 with their spdx, jsf and
// cryptography-defs subschemas), read from a folder such as the repository's
// testdata/cyclonedx. Tests use it to check every BOM they produce.
package cdxschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// baseURL is where the schemas' $id and relative $refs point.
const baseURL = "http://cyclonedx.org/schema/"

// files are the schema files a folder must hold.
var files = []string{"bom-1.6.schema.json", "bom-1.7.schema.json", "spdx.schema.json", "jsf-0.82.schema.json", "cryptography-defs.schema.json"}

// Validator holds the compiled schemas.
type Validator struct {
	schemas map[string]*jsonschema.Schema // by specVersion
}

// New compiles the schemas found in dir. Formats (iri-reference, date-time,
// email...) are asserted, not just annotated.
func New(dir string) (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if err := c.AddResource(baseURL+name, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	v := &Validator{schemas: map[string]*jsonschema.Schema{}}
	for _, ver := range []string{"1.6", "1.7"} {
		s, err := c.Compile(baseURL + "bom-" + ver + ".schema.json")
		if err != nil {
			return nil, fmt.Errorf("bom-%s.schema.json: %w", ver, err)
		}
		v.schemas[ver] = s
	}
	return v, nil
}

// Validate checks a CycloneDX JSON document against the schema of the
// specVersion it declares.
func (v *Validator) Validate(data []byte) error {
	var head struct {
		SpecVersion string `json:"specVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	s, ok := v.schemas[head.SpecVersion]
	if !ok {
		return fmt.Errorf("specVersion %q: no schema (want 1.6 or 1.7)", head.SpecVersion)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(doc)
}
