package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Lab is one L2 segment of hosts, each in its own network namespace, removed with its test.
//
// Methods of Lab and [Host] that take no testing.TB fail the test the lab was made with (t.Fatal)
// when the system refuses a command, which on a machine that passed [NeedRoot] is a harness bug:
// call them from that test's goroutine, or from one of its subtests (where Go's testing reports
// the failure as a FailNow on a parent test).
type Lab struct {
	t    testing.TB
	name string // prefix of every namespace: hx-<pid>-<random>
	sw   string // the switch namespace

	mu     sync.Mutex
	hosts  map[string]*Host
	procs  []*Process
	closed bool
}

// HostOption configures a host made by [Lab.Host].
type HostOption func(*hostConfig)

type hostConfig struct {
	delayed         bool
	egress, ingress time.Duration
}

// WithDelay joins the host to the switch through the userspace delay bridge instead of a veth
// pair, starting with the given one-way delays (zero is fine); [Host.SetDelay] changes them. Only
// such hosts can be delayed: the bridge costs CPU (four goroutines copying every frame) and 0.1
// to 0.3 ms per frame.
func WithDelay(egress, ingress time.Duration) HostOption {
	return func(c *hostConfig) { c.delayed, c.egress, c.ingress = true, egress, ingress }
}

// staleLab matches the namespaces of a lab; the pid is that of the test binary that made it.
var staleLab = regexp.MustCompile(`^hx-(\d+)-[0-9a-f]{4}-`)

// hostName is what a host may be called (namespace names are not length-limited, but keep them
// readable in `ip netns list`).
var hostName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,19}$`)

// switchBridge is the bridge of the switch namespace.
const switchBridge = "br0"

// New makes an empty lab (its switch) and removes it, and everything made in it, in t.Cleanup.
// It skips or fails the test, as [NeedRoot] does, when the machine cannot run a lab.
func New(t testing.TB) *Lab {
	t.Helper()
	NeedRoot(t)
	reapStale(t)
	var r [2]byte
	rand.Read(r[:])
	l := &Lab{t: t, name: fmt.Sprintf("hx-%d-%s", os.Getpid(), hex.EncodeToString(r[:])), hosts: map[string]*Host{}}
	l.sw = l.name + "-sw"
	t.Cleanup(l.close)
	if err := run("", "ip", "netns", "add", l.sw); err != nil {
		t.Fatal(err)
	}
	noIPv6(t, l.sw)
	if err := ipBatch(l.sw,
		"link set lo up",
		"link add name "+switchBridge+" type bridge stp_state 0 mcast_snooping 0",
		"link set "+switchBridge+" up",
	); err != nil {
		t.Fatal(err)
	}
	return l
}

// Name is the prefix of the names of every namespace of the lab: the switch is Name()+"-sw", a
// host Name()+"-"+its name.
func (l *Lab) Name() string { return l.name }

// Host makes a host called name (lower-case letters, digits and dashes, as in "n1" or "nats")
// with the next addresses of the lab (198.18.0.1 and fd00:cafe::1 for the first host, .2 and ::2
// for the second...), and joins it to the switch. Its faults start healed and uncapped.
func (l *Lab) Host(name string, opts ...HostOption) *Host {
	l.t.Helper()
	var cfg hostConfig
	for _, o := range opts {
		o(&cfg)
	}
	if !hostName.MatchString(name) {
		l.t.Fatalf("harness: host name %q: want %s", name, hostName)
	}
	l.mu.Lock()
	if l.closed || l.hosts[name] != nil {
		l.mu.Unlock()
		l.t.Fatalf("harness: host %q already exists or the lab is closed", name)
	}
	index := len(l.hosts) + 1
	h := &Host{lab: l, name: name, ns: l.name + "-" + name, port: "p" + strconv.Itoa(index),
		addr: hostAddr(index), addr6: hostAddr6(index)}
	l.hosts[name] = h // reserved; the lab's cleanup removes whatever part of it exists
	l.mu.Unlock()

	if err := run("", "ip", "netns", "add", h.ns); err != nil {
		l.t.Fatal(err)
	}
	quietIPv6(l.t, h.ns)
	if cfg.delayed {
		if err := h.joinTAP(cfg.egress, cfg.ingress); err != nil {
			l.t.Fatal(err)
		}
	} else if err := ipBatch(l.sw, "link add name "+h.port+" type veth peer name eth0 netns "+h.ns); err != nil {
		l.t.Fatal(err)
	}
	if err := ipBatch(l.sw, "link set "+h.port+" master "+switchBridge+" up"); err != nil {
		l.t.Fatal(err)
	}
	if err := ipBatch(h.ns,
		"link set lo up",
		"addr add "+h.addr.String()+"/15 dev eth0",
		"addr add "+h.addr6.String()+"/64 dev eth0 nodad", // usable at once: no duplicate detection
		"link set eth0 up",
	); err != nil {
		l.t.Fatal(err)
	}
	if err := h.nft(faultTable); err != nil {
		l.t.Fatal(err)
	}
	return h
}

// hostAddr is the address of the index-th host (from 1): 198.18.0.0 + index.
func hostAddr(index int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(index >> 8), byte(index)})
}

// hostAddr6 is the IPv6 address of the index-th host (from 1): fd00:cafe:: + index, a unique
// local address (RFC 4193) in the lab's one /64.
func hostAddr6(index int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 2: 0xca, 3: 0xfe, 14: byte(index >> 8), 15: byte(index)})
}

// noIPv6 turns IPv6 off in namespace ns (the switch's: the bridge forwards IPv6 frames without
// an IPv6 stack of its own).
func noIPv6(t testing.TB, ns string) {
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"} {
		if err := writeSysctl(ns, p, "1"); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// quietIPv6 keeps IPv6 on in host namespace ns but out of the way of a test or a measurement,
// for the interfaces made after it: no duplicate address detection (addresses usable at once,
// link-local ones too), no router solicitations or advertisements (the lab has no router).
// Neighbour discovery stays: it is how hosts find each other's IPv6 addresses.
func quietIPv6(t testing.TB, ns string) {
	for _, conf := range []string{"all", "default"} {
		for _, kv := range [][2]string{{"disable_ipv6", "0"}, {"accept_dad", "0"}, {"accept_ra", "0"}, {"router_solicitations", "0"}} {
			if err := writeSysctl(ns, "/proc/sys/net/ipv6/conf/"+conf+"/"+kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// track adds p to the processes the lab kills before removing its namespaces.
func (l *Lab) track(p *Process) {
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
}

// close kills every process of the lab, stops the delay bridges and deletes the namespaces.
func (l *Lab) close() {
	l.mu.Lock()
	l.closed = true
	procs := l.procs
	var hosts []*Host
	for _, h := range l.hosts {
		hosts = append(hosts, h)
	}
	l.mu.Unlock()

	for _, p := range procs {
		p.kill()
	}
	for _, h := range hosts {
		killNetns(l.t, h.ns)
		if h.delay != nil {
			h.delay.close()
		}
	}
	for _, h := range hosts {
		deleteNetns(l.t, h.ns)
	}
	deleteNetns(l.t, l.sw)
}

// killNetns kills every process left in namespace ns (one started by a process of the lab, or by
// a command run there) and waits, up to 5 s, for them to be gone.
func killNetns(t testing.TB, ns string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil { // the namespace does not exist (a host whose making failed)
			return
		}
		pids := strings.Fields(string(out))
		left := 0
		for _, s := range pids {
			pid, err := strconv.Atoi(s)
			if err != nil || pid == os.Getpid() {
				continue
			}
			left++
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("harness: processes %v still in namespace %s", pids, ns)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deleteNetns deletes namespace ns, if it exists.
func deleteNetns(t testing.TB, ns string) {
	if _, err := os.Stat(netnsPath(ns)); err != nil {
		return
	}
	if err := run("", "ip", "netns", "delete", ns); err != nil {
		t.Errorf("harness: cleanup: %v", err)
	}
}

// reapStale deletes the namespaces of labs whose test binary is dead: one killed by -timeout
// runs no cleanup.
func reapStale(t testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleLab.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		t.Logf("harness: removing namespace %s of a dead test binary (pid %d)", e.Name(), pid)
		killNetns(t, e.Name())
		deleteNetns(t, e.Name())
	}
}
