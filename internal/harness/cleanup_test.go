package harness

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCleanup runs a lab with everything in it (a delayed host, faults, a process with a child, a
// daemon that left its parent) in a subtest, and checks that nothing of it outlives the subtest:
// no namespace with its name, no process, no goroutine, no change to the root namespace's links.
func TestCleanup(t *testing.T) {
	NeedRoot(t)
	rootLinks := links(t)
	goroutines := runtime.NumGoroutine()
	var name string
	var pids []int
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		name = lab.Name()
		a := lab.Host("a")
		b := lab.Host("b", WithDelay(10*time.Millisecond, 10*time.Millisecond))
		a.Cut()
		a.BlockPort("udp", 7000)
		a.Cap(1_000_000, 1_000_000)
		b.Cap(1_000_000, 1_000_000)
		p := a.Start(t, "sleeper", "sh", "-c", "sleep 60 & echo child $!; wait")
		Eventually(t, 5*time.Second, func() error {
			if _, child, ok := strings.Cut(p.Output(), "child "); ok {
				pid, err := strconv.Atoi(strings.TrimSpace(child))
				pids = append(pids, p.Pid(), pid)
				return err
			}
			return fmt.Errorf("no child yet: %q", p.Output())
		})
		out, err := b.Run(context.Background(), "sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!")
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	})

	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.Contains(string(out), name) {
		t.Errorf("after the lab's test, ip netns list (%v):\n%s", err, out)
	}
	for _, pid := range pids {
		if s := procState(pid); s != "" && s != "Z" {
			t.Errorf("pid %d outlived the lab: state %s", pid, s)
		}
	}
	if now := links(t); !slices.Equal(now, rootLinks) {
		t.Errorf("root namespace links changed: %v, were %v", now, rootLinks)
	}
	Eventually(t, 2*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > goroutines {
			return fmt.Errorf("%d goroutines, %d before the lab", n, goroutines)
		}
		return nil
	})
}

// links lists the interfaces of the root namespace.
func links(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return names
}
