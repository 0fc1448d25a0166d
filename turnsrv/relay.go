package turnsrv

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/pion/turn/v5"
)

// relayGen makes the relay sockets of allocations: UDP only, each wrapped in a relayConn.
type relayGen struct{ s *Server }

func (g *relayGen) Validate() error { return nil }

func (g *relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	var relayIP net.IP
	for _, ip := range g.s.o.RelayIPs {
		if (ip.To4() != nil) == (c.Network == "udp4") {
			relayIP = ip
			break
		}
	}
	if relayIP == nil {
		return nil, nil, ErrNoRelayIP
	}
	pc, err := net.ListenPacket(c.Network, net.JoinHostPort(g.s.o.RelayBind, strconv.Itoa(c.RequestedPort)))
	if err != nil {
		return nil, nil, err
	}
	la, _ := pc.LocalAddr().(*net.UDPAddr)
	if la == nil {
		_ = pc.Close()
		return nil, nil, ErrNoRelayIP
	}
	return &relayConn{PacketConn: pc, s: g.s}, &net.UDPAddr{IP: relayIP, Port: la.Port}, nil
}

func (g *relayGen) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, ErrTCPRelay
}

func (g *relayGen) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) { return nil, ErrTCPRelay }

// relayConn is an allocation's relay socket. It sends only to the node's media sockets (to
// their local address where one is set) and passes up only what comes from them, under the
// media address the client knows; everything else is dropped and counted.
type relayConn struct {
	net.PacketConn
	s *Server
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		c.s.m.dropped.Inc()
		return len(p), nil
	}
	dst, ok := c.s.peers[unmap(ua.AddrPort())]
	if !ok {
		c.s.m.dropped.Inc()
		return len(p), nil // as a lossy network would: the client learns nothing
	}
	n, err := c.PacketConn.WriteTo(p, net.UDPAddrFromAddrPort(dst))
	if err == nil {
		c.s.m.toNodePackets.Inc()
		c.s.m.toNodeBytes.Add(float64(n))
	}
	return n, err
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			c.s.m.dropped.Inc()
			continue
		}
		src := unmap(ua.AddrPort())
		if media, ok := c.s.back[src]; ok {
			src = media
		} else if _, ok := c.s.peers[src]; !ok {
			c.s.m.dropped.Inc()
			continue
		}
		c.s.m.toClientPackets.Inc()
		c.s.m.toClientBytes.Add(float64(n))
		return n, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.Addr(), src.Port())), nil
	}
}
