package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/node/udpbatch"
)

// floorPPS is the packet rate of the floor, per receiver: about what the bots' VP8 clip sends.
const floorPPS = 167

// floor measures the kernel's share: plain 1200-byte UDP datagrams from one socket to n
// sockets in another process, at the video's packet rate, one sendto each or one sendmmsg per
// round. No SFU does less per forwarded packet on this machine.
func floor(mode string, n int, window time.Duration) (result, error) {
	res := result{Mode: "floor: " + mode, N: n}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	cmd := exec.Command(self, "-receivers", strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var dst []netip.AddrPort
	sc := bufio.NewScanner(out)
	for len(dst) < n && sc.Scan() {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(sc.Text()))
		if err != nil {
			return res, err
		}
		dst = append(dst, ap)
	}
	if len(dst) < n {
		return res, fmt.Errorf("receiver process gave %d addresses", len(dst))
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return res, err
	}
	defer udp.Close()
	conn := udpbatch.New(udp, 64, true)
	pkt := make([]byte, 1200)
	round := time.Second / floorPPS
	rounds := int(window / round)
	cpu0, err := cpuTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	start := time.Now()
	for r := 0; r < rounds; r++ {
		if mode == "sendmmsg" {
			conn.Begin()
		}
		for _, d := range dst {
			_, _ = conn.WriteToAddrPort(pkt, d)
		}
		if mode == "sendmmsg" {
			conn.End()
		}
		time.Sleep(time.Until(start.Add(time.Duration(r+1) * round)))
	}
	elapsed := time.Since(start).Seconds()
	cpu1, err := cpuTicks(os.Getpid())
	if err != nil {
		return res, err
	}
	cpu := float64(cpu1-cpu0) / clockTicks
	packets := float64(rounds * n)
	res.Cores = cpu / elapsed
	res.PPS = packets / elapsed
	res.USPerPacket = cpu * 1e6 / packets
	res.Joined = n
	return res, nil
}

// receive is the floor's receiver process: n sockets that read and discard.
func receive(n int) {
	for i := 0; i < n; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			fatal(err)
		}
		fmt.Println(c.LocalAddr().String())
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
	}
	select {}
}
