package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	chartDir = ".."       // charts/cascade
	repoRoot = "../../.." // the Cascade module
)

// workDir holds what the tests build once (the cascade binary, the busybox shim).
var workDir string

func TestMain(m *testing.M) {
	// The test binary doubles as a tiny busybox (sh, wget, date, sleep) so that the chart's
	// preStop script runs here exactly as written, without a container.
	if filepath.Base(os.Args[0]) == "busybox" {
		os.Exit(busybox(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "cascade-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// cascadeBinary builds the product's static binary once (as the Dockerfile does) and returns
// its path.
func cascadeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs(repoRoot)
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(workDir, "cascade")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, "./cmd/cascade")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/cascade in %s: %v\n%s", root, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// busyboxShim returns the path of a "busybox" symlink to this test binary.
func busyboxShim(t *testing.T) string {
	t.Helper()
	shimOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			shimErr = err
			return
		}
		shimPath = filepath.Join(workDir, "bin", "busybox")
		if err := os.MkdirAll(filepath.Dir(shimPath), 0o755); err != nil {
			shimErr = err
			return
		}
		shimErr = os.Symlink(exe, shimPath)
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
	return shimPath
}

// busybox implements the applets the chart's scripts use, with busybox's exit codes.
func busybox(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "busybox shim: no applet")
		return 1
	}
	switch applet, rest := args[0], args[1:]; applet {
	case "sh":
		sh, err := exec.LookPath("sh")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 127
		}
		err = syscall.Exec(sh, append([]string{"sh"}, rest...), os.Environ())
		fmt.Fprintln(os.Stderr, err)
		return 127
	case "date":
		if len(rest) != 1 || rest[0] != "+%s" {
			fmt.Fprintf(os.Stderr, "busybox shim: date %q not supported\n", rest)
			return 1
		}
		fmt.Println(time.Now().Unix())
		return 0
	case "sleep":
		if len(rest) != 1 {
			return 1
		}
		d, err := strconv.ParseFloat(rest[0], 64)
		if err != nil {
			return 1
		}
		time.Sleep(time.Duration(d * float64(time.Second)))
		return 0
	case "wget":
		return wget(rest)
	default:
		fmt.Fprintf(os.Stderr, "busybox shim: applet %q not supported\n", applet)
		return 127
	}
}

// wget is busybox wget's subset: -q, -O FILE, -T SECONDS, --header H, --post-data DATA, URL.
// Like busybox, it exits 1 on a connection error or an HTTP status >= 400.
func wget(args []string) int {
	var (
		out            = ""
		timeout        = 10 * time.Second
		headers        []string
		post           *string
		url            string
		missingOperand = func(f string) int { fmt.Fprintf(os.Stderr, "wget: %s needs a value\n", f); return 1 }
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		}
		switch a {
		case "-q":
		case "-O":
			v, ok := next()
			if !ok {
				return missingOperand(a)
			}
			out = v
		case "-T":
			v, ok := next()
			if !ok {
				return missingOperand(a)
			}
			s, err := strconv.Atoi(v)
			if err != nil {
				return 1
			}
			timeout = time.Duration(s) * time.Second
		case "--header":
			v, ok := next()
			if !ok {
				return missingOperand(a)
			}
			headers = append(headers, v)
		case "--post-data":
			v, ok := next()
			if !ok {
				return missingOperand(a)
			}
			post = &v
		default:
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(os.Stderr, "wget: option %q not supported by the shim\n", a)
				return 1
			}
			url = a
		}
	}
	method, body := http.MethodGet, io.Reader(nil)
	if post != nil {
		method, body = http.MethodPost, strings.NewReader(*post)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wget:", err)
		return 1
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wget:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		fmt.Fprintf(os.Stderr, "wget: server returned error: HTTP/1.1 %s\n", resp.Status)
		return 1
	}
	var w io.Writer = io.Discard
	switch out {
	case "-":
		w = os.Stdout
	case "", "/dev/null":
	default:
		f, err := os.Create(out)
		if err != nil {
			return 1
		}
		defer f.Close()
		w = f
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 1
	}
	return 0
}
