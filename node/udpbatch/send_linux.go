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
type mmsgSender struct {
	raw   syscall.RawConn
	slots []slot
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	addrs []unix.RawSockaddrInet4

	// Arguments and results of the raw write callback (made once: a method value allocates).
	count, sent, off int
	errno            syscall.Errno
	write            func(fd uintptr) bool
}

func newSender(udp *net.UDPConn, slots []slot) sender {
	raw, err := udp.SyscallConn()
	if err != nil {
		return loopSender{udp}
	}
	s := &mmsgSender{raw: raw, slots: slots, hdrs: make([]mmsghdr, len(slots)),
		iovs: make([]unix.Iovec, len(slots)), addrs: make([]unix.RawSockaddrInet4, len(slots))}
	for i := range slots {
		s.iovs[i].Base = &slots[i].buf[0]
		s.addrs[i].Family = unix.AF_INET
		s.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.addrs[i]))
		s.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
	s.write = s.sendmmsg
	return s
}

func (s *mmsgSender) send(slots []slot) (int, error) {
	// slots is a suffix of s.slots: find its offset.
	off := len(s.slots) - cap(slots)
	for i := range slots {
		j := off + i
		s.iovs[j].SetLen(slots[i].n)
		a := slots[i].addr
		s.addrs[j].Addr = a.Addr().As4()
		port := a.Port()
		p := (*[2]byte)(unsafe.Pointer(&s.addrs[j].Port))
		p[0], p[1] = byte(port>>8), byte(port)
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
