package cluster

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time the calling OS thread has used: a per-operation figure that other
// processes on a loaded machine do not inflate (the caller locks its goroutine to the thread).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
