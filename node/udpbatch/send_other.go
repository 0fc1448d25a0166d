//go:build !linux

package udpbatch

import "net"

// newSender returns the one-datagram-per-call sender and whether the socket is IPv6: without
// sendmmsg every datagram is written by the socket itself, so both families batch alike.
func newSender(udp *net.UDPConn, _ []slot) (sender, bool) {
	return loopSender{udp}, udp.LocalAddr().(*net.UDPAddr).IP.To4() == nil
}
