package udpbatch

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// mmsgSender sends with sendmmsg(2) from headers prepared once per slot: no allocation.
//
// The destination addresses follow the socket's family, read once from the socket: an AF_INET
// socket sends to sockaddr_in, an AF_INET6 one (IPv6 only, or dual-stack) to sockaddr_in6,
// IPv4 destinations as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d), so one batch carries both
// families on a dual-stack socket.
type mmsgSender struct {
	raw   syscall.RawConn
	slots []slot
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	v6    bool
	addrs []unix.RawSockaddrInet4 // AF_INET socket
	addr6 []unix.RawSockaddrInet6 // AF_INET6 socket

	// Arguments and results of the raw write callback (made once: a method value allocates).
	count, sent, off int
	errno            syscall.Errno
	write            func(fd uintptr) bool
}

// socketIsIPv6 tells whether udp is an AF_INET6 socket (which Go makes for "udp6" and for a
// dual-stack "udp" on an unspecified address).
func socketIsIPv6(raw syscall.RawConn) (bool, error) {
	var sa unix.Sockaddr
	var serr error
	if err := raw.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return false, err
	}
	if serr != nil {
		return false, serr
	}
	_, v6 := sa.(*unix.SockaddrInet6)
	return v6, nil
}

func newSender(udp *net.UDPConn, slots []slot) (sender, bool) {
	raw, err := udp.SyscallConn()
	if err != nil {
		return loopSender{udp}, false
	}
	v6, err := socketIsIPv6(raw)
	if err != nil {
		return loopSender{udp}, false
	}
	s := &mmsgSender{raw: raw, slots: slots, hdrs: make([]mmsghdr, len(slots)), iovs: make([]unix.Iovec, len(slots)), v6: v6}
	if v6 {
		s.addr6 = make([]unix.RawSockaddrInet6, len(slots))
	} else {
		s.addrs = make([]unix.RawSockaddrInet4, len(slots))
	}
	for i := range slots {
		s.iovs[i].Base = &slots[i].buf[0]
		if v6 {
			s.addr6[i].Family = unix.AF_INET6
			s.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.addr6[i]))
			s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		} else {
			s.addrs[i].Family = unix.AF_INET
			s.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.addrs[i]))
			s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		}
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
	s.write = s.sendmmsg
	return s, v6
}

func (s *mmsgSender) send(slots []slot) (int, error) {
	// slots is a suffix of s.slots: find its offset.
	off := len(s.slots) - cap(slots)
	for i := range slots {
		j := off + i
		s.iovs[j].SetLen(slots[i].n)
		a := slots[i].addr
		var port *uint16
		if s.v6 {
			s.addr6[j].Addr = a.Addr().As16() // an IPv4 address becomes ::ffff:a.b.c.d
			port = &s.addr6[j].Port
		} else {
			s.addrs[j].Addr = a.Addr().As4()
			port = &s.addrs[j].Port
		}
		p := (*[2]byte)(unsafe.Pointer(port))
		p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
	}
	s.count, s.sent, s.errno = len(slots), 0, 0
	s.off = off
	if err := s.raw.Write(s.write); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, s.errno
	}
	return s.sent, nil
}

func (s *mmsgSender) sendmmsg(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.off])), uintptr(s.count), 0, 0, 0)
	if errno == unix.EAGAIN {
		return false // wait until writable
	}
	s.sent, s.errno = int(n), errno
	return true
}
