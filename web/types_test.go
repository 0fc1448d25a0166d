package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// requireTool finds a program on PATH: a missing one skips the test loudly, and fails it under
// CI (CI=true), where .ci/run installs it.
func requireTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (%v): %s", name, err, why)
	}
	t.Skipf("SKIPPED: %s not found (%v): %s did not run", name, err, why)
	return ""
}

// TestTypeDeclarations checks static/cascade.d.ts against cascade.js: it installs the pinned
// TypeScript of types/package-lock.json (npm ci, in a temporary directory), compiles
// types/usage.ts, a program that uses the whole API through the declarations, with tsc --noEmit,
// and runs types/check.mjs, which loads cascade.js and compares its exports, methods, properties
// and events with the declared ones.
func TestTypeDeclarations(t *testing.T) {
	const why = "the TypeScript declarations check"
	nodeBin := requireTool(t, "node", why)
	npmBin := requireTool(t, "npm", why)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	tmp := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("types", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dir string, env []string, name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
		}
		if testing.Verbose() {
			t.Logf("%s %v:\n%s", filepath.Base(name), args, out)
		}
	}
	run(tmp, nil, npmBin, "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	typescript := filepath.Join(tmp, "node_modules", "typescript")
	run("types", nil, nodeBin, filepath.Join(typescript, "bin", "tsc"), "-p", "tsconfig.json")
	run("types", []string{"CASCADE_TYPESCRIPT=" + typescript}, nodeBin, "check.mjs")
}
