package relay

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU measures the CPU time (user and system) the benchmark's own thread spends in the
// timed parts: unlike ns/op, it hardly moves when other processes load the machine.
type threadCPU struct {
	from  time.Duration
	spent time.Duration
}

func threadCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPU locks the benchmark to its thread and starts measuring.
func startCPU(b *testing.B) *threadCPU {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	return &threadCPU{from: threadCPUTime()}
}

func (c *threadCPU) pause()  { c.spent += threadCPUTime() - c.from }
func (c *threadCPU) resume() { c.from = threadCPUTime() }

// report adds cpu-ns/op to the benchmark's results.
func (c *threadCPU) report(b *testing.B) {
	c.pause()
	b.ReportMetric(float64(c.spent.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
