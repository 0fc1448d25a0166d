package test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Kubernetes objects passed through as they are: their fields are Kubernetes', documented there.
var passthrough = []string{"resources", "podSecurityContext", "securityContext", "probes.readiness",
	"probes.liveness", "probes.startup", "bots.resources"}

// TestValuesDocumented: every key of values.yaml has a comment right above it.
func TestValuesDocumented(t *testing.T) {
	b, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yamlv3.Node, path string)
	walk = func(n *yamlv3.Node, path string) {
		if n.Kind != yamlv3.MappingNode || slices.Contains(passthrough, path) {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if strings.TrimSpace(k.HeadComment) == "" {
				t.Errorf("values.yaml line %d: %s has no comment", k.Line, p)
			}
			walk(v, p)
		}
	}
	walk(doc.Content[0], "")
}

// TestSchemaCoversValues: values.schema.json knows every key of values.yaml (helm lint checks
// that, with additionalProperties: false), and values.yaml sets every key the schema lists, so
// neither goes stale.
func TestSchemaCoversValues(t *testing.T) {
	var schema map[string]any
	b, err := os.ReadFile(chartDir + "/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	r := render(t, renderOpts{})
	var walk func(s map[string]any, vals map[string]any, path string)
	walk = func(s map[string]any, vals map[string]any, path string) {
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			t.Errorf("schema %s: additionalProperties is not false: a typo in a key would pass", path)
		}
		for k, sub := range props {
			p := strings.TrimPrefix(path+"."+k, ".")
			if p == "global" {
				continue
			}
			v, ok := vals[k]
			if !ok {
				if !slices.Contains([]string{"initialDelaySeconds", "successThreshold", "claims"}, k) {
					t.Errorf("schema lists %s, values.yaml does not set it", p)
				}
				continue
			}
			subSchema := sub.(map[string]any)
			if _, has := subSchema["properties"]; has {
				if m, ok := v.(map[string]any); ok {
					walk(subSchema, m, p)
				}
			}
		}
		for k := range vals {
			if _, ok := props[k]; !ok {
				t.Errorf("values.yaml sets %s, the schema does not list it", strings.TrimPrefix(path+"."+k, "."))
			}
		}
	}
	walk(schema, r.values, "")
}
