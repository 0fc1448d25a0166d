package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Host is one machine of a [Lab]: a network namespace with lo and eth0, which holds the host's
// addresses, one IPv4 and one IPv6. Every host of a lab reaches every other over either family;
// each has its own ports.
type Host struct {
	lab   *Lab
	name  string
	ns    string     // namespace name
	port  string     // the switch-side end of its link, in the switch namespace
	addr  netip.Addr // on eth0, in 198.18.0.0/15
	addr6 netip.Addr // on eth0, in fd00:cafe::/64
	delay *delayLink // nil unless made WithDelay
}

// Name is the name given to [Lab.Host].
func (h *Host) Name() string { return h.name }

// Addr is the host's address, in 198.18.0.0/15.
func (h *Host) Addr() netip.Addr { return h.addr }

// Addr6 is the host's IPv6 address, in fd00:cafe::/64 (fd00:cafe::1 for the first host). The
// host also has a link-local address (fe80::/64) on eth0, as every IPv6 interface does.
func (h *Host) Addr6() netip.Addr { return h.addr6 }

// Netns is the name of the host's network namespace, for `ip netns exec` or /run/netns/<name>.
func (h *Host) Netns() string { return h.ns }

// Run runs argv in the host's namespace and returns its combined output; the error, if any, holds
// the output too. ctx bounds it: it is killed when ctx ends.
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("harness: Run: no command")
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("harness: %s on %s: %w: %s", strings.Join(argv, " "), h.name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Do runs fn on an OS thread that is inside the host's namespace, and returns its error. A socket
// keeps the namespace it was made in, so this is how the test process itself gets a listener or
// a connection on a host: make it inside fn, use it anywhere afterwards.
//
//	var conn net.PacketConn
//	err := h.Do(func() (err error) { conn, err = net.ListenPacket("udp4", ":7000"); return err })
//
// Goroutines fn starts do not run in the namespace; fn must not keep the thread (no
// runtime.LockOSThread left unbalanced).
func (h *Host) Do(fn func() error) error { return inNetns(h.ns, fn) }

// joinTAP joins the host to the switch through a delay bridge.
func (h *Host) joinTAP(egress, ingress time.Duration) error {
	hostTAP, err := openTAP(h.ns, "eth0")
	if err != nil {
		return err
	}
	swTAP, err := openTAP(h.lab.sw, h.port)
	if err != nil {
		hostTAP.Close()
		return err
	}
	h.delay = newDelayLink(hostTAP, swTAP, egress, ingress)
	return nil
}

// nft runs an nftables script in the host's namespace.
func (h *Host) nft(script string) error {
	return run(script, "ip", "netns", "exec", h.ns, "nft", "-f", "-")
}
