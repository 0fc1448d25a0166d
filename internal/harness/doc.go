// Package harness runs tests and benchmarks on "bad days": several hosts on one machine, each in
// its own network namespace, with links that can be cut, ports that can be blocked, bandwidth
// that can be capped and one-way delay that can be added, changed and removed at run time.
//
// It needs root (network namespaces, nftables, tc, /dev/net/tun). [NeedRoot] skips a test loudly
// without it, and fails it under CI=true; [New] calls it first.
//
// # Topology
//
// A [Lab] is one L2 segment. Its switch is a namespace holding a Linux bridge, br0; every host is
// a namespace with lo up and one interface, eth0, holding one IPv4 address from 198.18.0.0/15
// (the benchmarking range) and one IPv6 address from fd00:cafe::/64 (a unique local range): the
// first host gets 198.18.0.1 and fd00:cafe::1, the second 198.18.0.2 and fd00:cafe::2, and so
// on ([Host.Addr], [Host.Addr6]). Every host reaches every other by either address; nothing
// reaches the machine's own network, and the root namespace gets no address, route or interface.
// IPv6 is quiet: no duplicate address detection (addresses are usable at once), no router
// solicitations; a host also has its link-local fe80:: address, as any IPv6 interface.
//
//	n1 (198.18.0.1)       n2 (198.18.0.2)             n3 (198.18.0.3), made WithDelay
//	   (fd00:cafe::1)        (fd00:cafe::2)              (fd00:cafe::3)
//	eth0 (veth)           eth0 (veth)                 eth0 (TAP)
//	 |                     |                           |   fd held by the test process:
//	 |                     |                           |   one goroutine pair per direction
//	 |                     |                           |   copies frames after the delay
//	p1 (veth)             p2 (veth)                   p3 (TAP)
//	'---------------- br0 in the switch namespace -----'
//
// A host is joined by a veth pair, or, when made with [WithDelay], by two TAP devices whose file
// descriptors the test process holds: a small userspace bridge copies each Ethernet frame, untouched,
// from one to the other after the configured delay of its direction (addresses are preserved, so
// anything matched by address keeps working). Userspace copying costs CPU, so only the hosts
// that need a delay pay for it.
//
// Faults live where a real network has them: [Host.Cut], [Host.BlockPort] and [Host.BlockUDP] drop packets with
// nftables on eth0 in the host's namespace (netdev ingress and egress hooks, so a sender sees no
// error, as on a real lossy path); [Host.Cap] puts a tbf qdisc on the sending side of each
// direction (eth0 for egress, the switch-side port for ingress); [Host.SetDelay] changes the
// userspace bridge's delays, and [Host.SetDelayTo] gives the frames to one other host a delay of
// their own, in their own queue (regions: delays between them, none inside one). Every fault holds for IPv4 and IPv6 alike: the nftables rules match
// the layer-4 protocol whatever the network layer, a qdisc and the delay bridge see frames.
//
// Every name of a lab starts with its [Lab.Name], "hx-<pid>-<random>", so test binaries running
// in parallel never collide. Everything a lab makes is removed by t.Cleanup, even when the test
// fails: processes are killed, the delay bridges stop, the namespaces (and with them their
// interfaces, qdiscs and tables) are deleted. Namespaces left behind by a test binary that died
// without its cleanups (a -timeout panic) are removed by the next [New], since their pid is dead.
//
// # Example
//
//	lab := harness.New(t)
//	nats := lab.Host("nats")
//	n1 := lab.Host("n1", harness.WithDelay(40*time.Millisecond, 0))
//	url := "nats://" + nats.Addr().String() + ":4222"
//	nats.Start(t, "nats-server", harness.NATSServer(t), "-a", nats.Addr().String(), "-p", "4222")
//	node := n1.Start(t, "node", harness.Cascade(t), "node", "--nats", url, "--cluster-secret", secret)
//	heal := n1.BlockPort("tcp", 4222) // n1 loses NATS, and nothing else
//	harness.Eventually(t, 10*time.Second, func() error { ... })
//	heal()
//	node.Stop() // a frozen node: its sockets open, nothing answering
//
// # Limits
//
// The lab has no router, DNS or DHCP: addresses are static. The delay bridge is accurate to about a
// millisecond (timer wake-ups: 40 ms measures 40.6 to 41.5 ms), adds 0.1 to 0.3 ms per frame
// without a delay, has no jitter or loss of its own, and carries frames of up to a 1500-byte MTU.
// Processes get Pdeathsig, which Linux ties to the thread that forked them: should that thread
// end (the runtime ends a thread only when a goroutine exits while locked to it), the process
// loses that protection: the lab's cleanup still kills it, and should the test binary die first,
// the next [New] does, with the stale namespaces.
package harness
