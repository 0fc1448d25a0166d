package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHelperProcess is no test: it is the UDP echo server TestProcess starts, this test binary
// run again with HARNESS_HELPER=<port>. It answers like echoUDP, with a zero arrival stamp.
func TestHelperProcess(t *testing.T) {
	port := os.Getenv("HARNESS_HELPER")
	if port == "" {
		return
	}
	conn, err := net.ListenPacket("udp4", ":"+port)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Println("ready")
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			os.Exit(3)
		}
		conn.WriteTo(binary.BigEndian.AppendUint64(buf[:n], 0), from)
	}
}

// TestProcess starts a UDP echo in a host and checks that it runs in the host's namespace, that
// SIGSTOP silences it and SIGCONT brings it back, and that SIGKILL ends it.
func TestProcess(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := b.Start(t, "echo", "env", "HARNESS_HELPER=7000", exe, "-test.run=^TestHelperProcess$")
	Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(p.Output(), "ready") {
			return fmt.Errorf("echo not ready: %q", p.Output())
		}
		return nil
	})
	if !sameNetns(t, fmt.Sprintf("/proc/%d/ns/net", p.Pid()), netnsPath(b.Netns())) {
		t.Fatalf("pid %d is not in namespace %s", p.Pid(), b.Netns())
	}
	out, err := b.Run(context.Background(), "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(string(out), b.Addr().String()+"/15") {
		t.Fatalf("Run ip addr in b: %v: %s", err, out)
	}
	if _, err := p.Wait(50 * time.Millisecond); !errors.Is(err, ErrRunning) {
		t.Fatalf("Wait on a running process: %v, want ErrRunning", err)
	}

	ping := &pinger{conn: listenUDP(t, a, 0), base: time.Now()}
	to := netip.AddrPortFrom(b.Addr(), 7000)
	pingOK := func() error { _, _, err := ping.ping(to, time.Second); return err }
	Eventually(t, 5*time.Second, pingOK)

	p.Stop()
	Eventually(t, 2*time.Second, func() error {
		if s := procState(p.Pid()); s != "T" {
			return fmt.Errorf("state %q after SIGSTOP, want T", s)
		}
		return nil
	})
	if _, _, err := ping.ping(to, lost); blocked(err) != nil {
		t.Fatalf("ping a stopped echo: %v", blocked(err))
	}
	p.Cont()
	Eventually(t, 2*time.Second, pingOK)

	p.Kill()
	code, err := p.Wait(5 * time.Second)
	if code != -1 || err != nil {
		t.Fatalf("Wait after SIGKILL: code %d, %v; want -1, nil", code, err)
	}
}

// sameNetns reports whether two namespace files are the same namespace.
func sameNetns(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

// procState is the state letter of pid ("R", "S", "T", "Z"...), or "" when there is no pid.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+3 <= len(s) {
		return s[i+2 : i+3]
	}
	return ""
}
