package udpbatch

import "net"

// loopSender sends one datagram per system call (platforms without sendmmsg).
type loopSender struct{ udp *net.UDPConn }

func (l loopSender) send(slots []slot) (int, error) {
	for i := range slots {
		if _, err := l.udp.WriteToUDPAddrPort(slots[i].buf[:slots[i].n], slots[i].addr); err != nil {
			if i == 0 {
				return 0, err
			}
			return i, nil
		}
	}
	return len(slots), nil
}
