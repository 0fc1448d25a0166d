package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsPath is where `ip netns add` mounts a named namespace.
func netnsPath(ns string) string { return "/run/netns/" + ns }

// inNetns runs fn on an OS thread that has entered the network namespace ns, then moves the
// thread back. It runs fn on a fresh goroutine and waits for it: should the way back fail, that
// goroutine exits still locked to its thread, and the runtime ends the thread rather than reuse
// it in the wrong namespace.
func inNetns(ns string, fn func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		var back *os.File
		back, err = os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		defer back.Close()
		var target *os.File
		target, err = os.Open(netnsPath(ns))
		if err != nil {
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("harness: enter namespace %s: %w", ns, err)
			runtime.UnlockOSThread()
			return
		}
		err = fn()
		if berr := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); berr != nil {
			err = fmt.Errorf("harness: leave namespace %s: %w", ns, berr)
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
	}()
	<-done
	return err
}

// command returns a command that dies with the test process (Pdeathsig) and runs in its own
// process group, so that a kill of the group also reaches the children it forks.
func command(argv ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

// run runs argv with stdin (if not empty) and returns an error naming the command and holding
// its output when it fails.
func run(stdin string, argv ...string) error {
	cmd := command(argv...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("harness: %s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// ipBatch runs iproute2 commands, one per line, in namespace ns ("" for the current one).
func ipBatch(ns string, lines ...string) error {
	argv := []string{"ip", "-b", "-"}
	if ns != "" {
		argv = []string{"ip", "-n", ns, "-b", "-"}
	}
	return run(strings.Join(lines, "\n")+"\n", argv...)
}

// openTAP creates TAP device name in namespace ns and returns its file, held open by the test
// process: the device lives as long as the file. Reads and writes are whole Ethernet frames
// (IFF_NO_PI), and the file is non-blocking, so Close unblocks a pending Read.
func openTAP(ns, name string) (*os.File, error) {
	var f *os.File
	err := inNetns(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("harness: open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("harness: TAP %s: %w", name, err)
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("harness: TUNSETIFF %s in %s: %w", name, ns, err)
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	return f, err
}

// writeSysctl sets a sysctl of namespace ns by writing under /proc/sys/net, which shows the
// namespace of the writing thread.
func writeSysctl(ns, path, value string) error {
	return inNetns(ns, func() error { return os.WriteFile(path, []byte(value), 0) })
}
