//go:build !linux

package sim

import "time"

// threadCPU falls back to the wall clock where there is no per-thread CPU clock.
func threadCPU() int64 { return time.Now().UnixNano() }
