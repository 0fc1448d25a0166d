package harness

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// listenUDP opens a UDP socket on port of h's IPv4 address, closed with the test.
func listenUDP(t *testing.T, h *Host, port uint16) *net.UDPConn {
	t.Helper()
	return listenUDPOn(t, h, netip.AddrPortFrom(h.Addr(), port))
}

// listenUDPOn opens a UDP socket on addr of h (an IPv4 or IPv6 address of h, or the unspecified
// "::" for a dual-stack socket on all of them), closed with the test.
func listenUDPOn(t *testing.T, h *Host, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := h.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// echoUDP answers every datagram on a new socket on port of h, dual-stack (IPv4 and IPv6), with
// the datagram followed by the time it arrived (ns since base); the goroutine ends with the test.
func echoUDP(t *testing.T, h *Host, port uint16, base time.Time) {
	t.Helper()
	conn := listenUDPOn(t, h, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			arrived := time.Since(base)
			reply := binary.BigEndian.AppendUint64(append([]byte(nil), buf[:n]...), uint64(arrived))
			conn.WriteToUDPAddrPort(reply, from)
		}
	}()
}

// pinger sends numbered datagrams and waits for their echo.
type pinger struct {
	conn *net.UDPConn
	base time.Time
	seq  uint64
}

// ping sends one datagram to to and returns the one-way times there and back (from the echo's
// arrival stamp), or an error when no echo came within timeout.
func (p *pinger) ping(to netip.AddrPort, timeout time.Duration) (there, back time.Duration, err error) {
	p.seq++
	msg := binary.BigEndian.AppendUint64(nil, p.seq)
	sent := time.Since(p.base)
	msg = binary.BigEndian.AppendUint64(msg, uint64(sent))
	if _, err := p.conn.WriteToUDPAddrPort(msg, to); err != nil {
		return 0, 0, err
	}
	p.conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	for {
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return 0, 0, fmt.Errorf("no echo from %v: %w", to, err)
		}
		if n != 24 || !bytes.Equal(buf[:8], msg[:8]) {
			continue // a late echo of an earlier ping
		}
		arrived := time.Duration(binary.BigEndian.Uint64(buf[16:24]))
		return arrived - sent, time.Since(p.base) - arrived, nil
	}
}

// serveTCP accepts connections on port of h, dual-stack (IPv4 and IPv6), and closes them; the
// goroutine ends with the test.
func serveTCP(t *testing.T, h *Host, port uint16) {
	t.Helper()
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), port).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// dialTCP connects from h to to (IPv4 or IPv6) within timeout.
func dialTCP(h *Host, to netip.AddrPort, timeout time.Duration) error {
	return h.Do(func() error {
		c, err := net.DialTimeout("tcp", to.String(), timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// blocked turns the error of a check that should have timed out into nil, and its success or any
// other error (a refusal, EPERM: not the silence of a lost packet) into an error.
func blocked(err error) error {
	var ne net.Error
	switch {
	case err == nil:
		return errors.New("got through")
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	default:
		return fmt.Errorf("failed, but not silently: %w", err)
	}
}
