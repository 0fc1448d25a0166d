package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// build is one binary built at most once per test process.
type build struct {
	once sync.Once
	path string
	err  error
}

// The build caches: the only package-level state.
var (
	cascadeBuild build
	natsBuild    build
)

// Cascade builds ./cmd/cascade, once per test process, and returns the binary's path. A build
// error fails t.
func Cascade(t testing.TB) string {
	t.Helper()
	return cascadeBuild.get(t, "cascade", "./cmd/cascade")
}

// NATSServer builds nats-server, at the version go.mod requires, once per test process, and
// returns the binary's path. A build error fails t.
func NATSServer(t testing.TB) string {
	t.Helper()
	return natsBuild.get(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

// get builds pkg into name, in the module root, the first time.
func (b *build) get(t testing.TB, name, pkg string) string {
	t.Helper()
	b.once.Do(func() { b.path, b.err = goBuild(name, pkg) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// binDirName is where a test process puts its binaries: os.TempDir()/cascade-harness-<pid>.
var binDirName = regexp.MustCompile(`^cascade-harness-(\d+)$`)

// goBuild runs go build -o <dir>/name pkg in the module root. The directory is per test process
// (binaries are shared by its tests); those of dead test processes are removed here.
func goBuild(name, pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	removeDeadBinDirs()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("cascade-harness-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("harness: build %s: %w", pkg, err)
	}
	path := filepath.Join(dir, name)
	cmd := exec.Command(goTool, "build", "-o", path, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go build %s: %w\n%s", pkg, err, out)
	}
	return path, nil
}

// removeDeadBinDirs removes the binary directories of test processes that are gone.
func removeDeadBinDirs() {
	entries, _ := os.ReadDir(os.TempDir())
	for _, e := range entries {
		m := binDirName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

// moduleRoot walks up from the working directory (a test's package directory) to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}
