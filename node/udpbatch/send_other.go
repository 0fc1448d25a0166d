//go:build !linux

package udpbatch

import "net"

func newSender(udp *net.UDPConn, _ []slot) sender { return loopSender{udp} }
