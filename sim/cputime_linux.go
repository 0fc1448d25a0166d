package sim

import "golang.org/x/sys/unix"

// threadCPU is the CPU time of the calling OS thread: the placement's decision time without
// the time the thread waited for a core (this machine's cores are shared; Run locks its
// goroutine to one thread).
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}
