package sbom

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// spdxSchema is a copy of CycloneDX's spdx.schema.json (the enum of SPDX
// license identifiers the BOM schema accepts in license.id). The test suite
// checks that it is the same file as testdata/cyclonedx/spdx.schema.json.
//
//go:embed spdx.schema.json
var spdxSchema []byte

// spdxIndex maps lower-case SPDX identifiers to their canonical spelling.
var spdxIndex = sync.OnceValues(func() (map[string]string, error) {
	var s struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(spdxSchema, &s); err != nil {
		return nil, fmt.Errorf("embedded spdx.schema.json: %w", err)
	}
	m := make(map[string]string, len(s.Enum))
	for _, id := range s.Enum {
		m[strings.ToLower(id)] = id
	}
	return m, nil
})

// SPDXID returns the canonical SPDX license identifier for id, compared
// case-insensitively as SPDX specifies ("apache-2.0" gives "Apache-2.0"),
// and false when id is not in the list CycloneDX's schema accepts.
func SPDXID(id string) (string, bool) {
	m, err := spdxIndex()
	if err != nil {
		return "", false
	}
	c, ok := m[strings.ToLower(strings.TrimSpace(id))]
	return c, ok
}
