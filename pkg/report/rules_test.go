package report

import (
	"os"
	"strings"
	"testing"
)

// TestRulesDocumented keeps README.md's rule table in step with the rules
// modelseal emits.
func TestRulesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for id, desc := range ruleDescriptions {
		if desc == "" {
			t.Errorf("rule %s has no description", id)
		}
		if !strings.Contains(string(readme), "`"+id+"`") {
			t.Errorf("rule %s is not in README.md", id)
		}
	}
}
