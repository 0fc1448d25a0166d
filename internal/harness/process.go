package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ErrRunning is returned by [Process.Wait] when the process outlives the timeout.
var ErrRunning = errors.New("harness: process still running")

// dumpTail is how much of a process's output a failed test logs.
const dumpTail = 32 << 10

// Process is a program started by [Host.Start] in a host's namespace. It dies with its test: the
// test's cleanup kills it (and its process group), and Pdeathsig kills it should the test binary
// die first.
type Process struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	log  string // file holding stdout and stderr

	done chan struct{} // closed once it exited and was reaped; then code and err are set
	code int
	err  error
}

// Start runs path with args in the host's namespace (`ip netns exec`, which execs, so
// [Process.Pid] is the program's own) with the test process's environment; to add variables,
// start "env" with them: h.Start(t, "node", "env", "CASCADE_REGION=eu", bin, "node"). Its stdout
// and stderr go to a file in t.TempDir(), read by [Process.Output] and logged when t fails. t's
// cleanup kills it; so does the lab's, if that comes first.
func (h *Host) Start(t testing.TB, name, path string, args ...string) *Process {
	t.Helper()
	if strings.Contains(path, "/") {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("harness: start %s: %v", name, err)
		}
	}
	h.lab.mu.Lock()
	closed := h.lab.closed
	h.lab.mu.Unlock()
	if closed {
		t.Fatalf("harness: start %s on %s: the lab is closed", name, h.name)
	}
	logPath := filepath.Join(t.TempDir(), strings.ReplaceAll(name, "/", "_")+".log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := command(append([]string{"ip", "netns", "exec", h.ns, path}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("harness: start %s on %s: %v", name, h.name, err)
	}
	p := &Process{t: t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go p.reap(out)
	h.lab.track(p)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("harness: output of %s (pid %d) on %s:\n%s", name, p.Pid(), h.name, tail(p.Output(), dumpTail))
		}
	})
	return p
}

// reap waits for the process, the one goroutine a Process owns; kill waits for it to end.
func (p *Process) reap(out *os.File) {
	err := p.cmd.Wait()
	out.Close()
	p.code = p.cmd.ProcessState.ExitCode()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		p.err = err
	}
	close(p.done)
}

// Pid is the program's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process; a process that has exited is not an error.
func (p *Process) Signal(sig os.Signal) {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("harness: signal %v to %s: %v", sig, p.name, err)
	}
}

// Kill sends SIGKILL: a crash, with no chance to clean up.
func (p *Process) Kill() { p.Signal(syscall.SIGKILL) }

// Stop sends SIGSTOP: the process freezes (a stalled server: its sockets stay open, nothing
// answers) until [Process.Cont].
func (p *Process) Stop() { p.Signal(syscall.SIGSTOP) }

// Cont sends SIGCONT, resuming a process frozen by [Process.Stop].
func (p *Process) Cont() { p.Signal(syscall.SIGCONT) }

// Wait waits up to timeout for the process to exit and returns its exit code, -1 when a signal
// ended it. The error is [ErrRunning] (wrapped) when it is still running, or why it could not be
// waited for.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.code, p.err
	case <-timer.C:
		return 0, fmt.Errorf("%w: %s after %v", ErrRunning, p.name, timeout)
	}
}

// Output returns what the process wrote to stdout and stderr so far.
func (p *Process) Output() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(no output: %v)", err)
	}
	return string(b)
}

// kill kills the process and its process group, unless it already exited, and waits for it.
func (p *Process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.Pid(), syscall.SIGKILL) // its group: it and the children it forked
	p.cmd.Process.Signal(syscall.SIGKILL)   // should it have left the group
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("harness: %s (pid %d) still running 10 s after SIGKILL", p.name, p.Pid())
	}
}

// tail returns the last n bytes of s, marked as cut when it was longer.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(s)-n, s[len(s)-n:])
}
