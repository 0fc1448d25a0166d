package signal_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// openAPI is the part of api/openapi.yaml the tests read.
type openAPI struct {
	OpenAPI    string                    `yaml:"openapi"`
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas         map[string]schema `yaml:"schemas"`
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
	} `yaml:"components"`
	Security []map[string][]string `yaml:"security"`
}

type schema struct {
	Ref        string         `yaml:"$ref"`
	Required   []string       `yaml:"required"`
	Properties map[string]any `yaml:"properties"`
	AllOf      []schema       `yaml:"allOf"`
}

var httpMethods = map[string]bool{"get": true, "post": true, "put": true, "patch": true, "delete": true}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	b, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec openAPI
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if spec.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", spec.OpenAPI)
	}
	return spec
}

// specRoutes lists the operations of the spec as "METHOD /path", sorted.
func specRoutes(spec openAPI) []string {
	var out []string
	for path, item := range spec.Paths {
		for m := range item {
			if httpMethods[m] {
				out = append(out, strings.ToUpper(m)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// servedRoutes lists the mux patterns under /api/ that the signal package registers: every
// string constant of its non-test sources that reads "METHOD /api/...". Scanning the sources
// finds the routes whoever added them; TestOpenAPIRoutesServed checks they are really served.
func servedRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	pattern := regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE) (/api/\S*)$`)
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && pattern.MatchString(s) {
					seen[s] = true
				}
			}
			return true
		})
	}
	var out []string
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIMatchesRoutes: api/openapi.yaml describes exactly the routes served under /api/,
// each behind the bearer admin auth.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	spec := loadOpenAPI(t)
	inSpec, served := specRoutes(spec), servedRoutes(t)
	if len(served) == 0 {
		t.Fatal("no route under /api/ found in the signal package's sources")
	}
	specSet := map[string]bool{}
	for _, r := range inSpec {
		specSet[r] = true
	}
	for _, r := range served {
		if !specSet[r] {
			t.Errorf("%s is served but missing from api/openapi.yaml", r)
		}
		delete(specSet, r)
	}
	for r := range specSet {
		t.Errorf("api/openapi.yaml describes %s, which no node serves", r)
	}
	if s := spec.Components.SecuritySchemes["admin"]; s.Type != "http" || s.Scheme != "bearer" {
		t.Errorf("security scheme admin: %+v, want http bearer", s)
	}
	if len(spec.Security) != 1 || spec.Security[0]["admin"] == nil {
		t.Errorf("the spec's security is %v, want the admin scheme on every operation", spec.Security)
	}
}

// TestOpenAPIRoutesServed: a real node answers each operation of the spec from a handler of the
// room API (not the catch-all's "no room API endpoint", not the router's 404 or 405).
func TestOpenAPIRoutesServed(t *testing.T) {
	e := roomAPICluster(t, 1)[0]
	admin := adminToken(t)
	for _, route := range specRoutes(loadOpenAPI(t)) {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{room}", "no-room", "{identity}", "nobody").Replace(path)
		req, err := http.NewRequest(method, e.http.URL+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusMethodNotAllowed || strings.Contains(string(b), "no room API endpoint") ||
			strings.HasPrefix(string(b), "404 page not found") { // the router's own 404, without the catch-all
			t.Errorf("%s %s: %d %s: not served", method, path, res.StatusCode, b)
		}
	}
}

// TestOpenAPISchemasMatchTypes: each schema has the JSON fields of its Go type, and requires
// exactly the fields the type always writes (those without omitempty).
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	spec := loadOpenAPI(t)
	types := map[string]reflect.Type{
		"Error":             reflect.TypeFor[proto.Error](),
		"Room":              reflect.TypeFor[proto.APIRoom](),
		"RoomNode":          reflect.TypeFor[proto.APIRoomNode](),
		"RoomDetail":        reflect.TypeFor[proto.APIRoomDetail](),
		"RoomProducer":      reflect.TypeFor[proto.APIProducer](),
		"Edge":              reflect.TypeFor[proto.APIEdge](),
		"Producer":          reflect.TypeFor[proto.Producer](),
		"Layer":             reflect.TypeFor[proto.Layer](),
		"Participant":       reflect.TypeFor[proto.APIParticipant](),
		"RoomPage":          reflect.TypeFor[proto.RoomPage](),
		"ParticipantPage":   reflect.TypeFor[proto.ParticipantPage](),
		"CreateRoom":        reflect.TypeFor[proto.CreateRoom](),
		"UpdateRoom":        reflect.TypeFor[proto.UpdateRoom](),
		"UpdateParticipant": reflect.TypeFor[proto.UpdateParticipant](),
		"MuteProducer":      reflect.TypeFor[proto.MuteProducer](),
		"SendData":          reflect.TypeFor[proto.SendData](),
	}
	for name := range spec.Components.Schemas {
		if types[name] == nil {
			t.Errorf("schema %s has no Go type in this test", name)
		}
	}
	for name, typ := range types {
		s, ok := spec.Components.Schemas[name]
		if !ok {
			t.Errorf("no schema %s (%v)", name, typ)
			continue
		}
		props, required := flatten(t, spec, s)
		fields, always := jsonFields(typ)
		if got, want := strings.Join(props, " "), strings.Join(fields, " "); got != want {
			t.Errorf("schema %s has properties %s; %v has %s", name, got, typ, want)
		}
		if got, want := strings.Join(required, " "), strings.Join(always, " "); got != want {
			t.Errorf("schema %s requires %s; %v always writes %s", name, got, typ, want)
		}
	}
	codes := spec.Components.Schemas["Error"].Properties["code"]
	for _, c := range []string{proto.CodeBadRequest, proto.CodeUnauthorized, proto.CodeTokenExpired, proto.CodeForbidden,
		proto.CodeNotFound, proto.CodeRoomFull, proto.CodeClusterUnavailable, proto.CodeInternal} {
		if !strings.Contains(strings.Join(anyStrings(codes), " "), c) {
			t.Errorf("error code %s is not in the Error schema's enum", c)
		}
	}
}

// anyStrings is the enum of a decoded property.
func anyStrings(p any) []string {
	m, _ := p.(map[string]any)
	var out []string
	if list, ok := m["enum"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// flatten is a schema's properties and required fields (sorted), its allOf and $ref resolved.
func flatten(t *testing.T, spec openAPI, s schema) (props, required []string) {
	t.Helper()
	p, r := map[string]bool{}, map[string]bool{}
	var walk func(s schema, depth int)
	walk = func(s schema, depth int) {
		if depth > 5 {
			t.Fatal("schemas refer to each other in a loop")
		}
		if s.Ref != "" {
			walk(spec.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")], depth+1)
		}
		for _, sub := range s.AllOf {
			walk(sub, depth+1)
		}
		for k := range s.Properties {
			p[k] = true
		}
		for _, k := range s.Required {
			r[k] = true
		}
	}
	walk(s, 0)
	return sortedKeys(p), sortedKeys(r)
}

// jsonFields is the JSON fields of a struct type (embedded structs flattened), sorted, and
// those without omitempty.
func jsonFields(typ reflect.Type) (all, always []string) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			a, w := jsonFields(f.Type)
			all, always = append(all, a...), append(always, w...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	sort.Strings(all)
	sort.Strings(always)
	return all, always
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
