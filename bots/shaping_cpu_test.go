package bots_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The shaping test's lab shares the machine's cores with whatever else runs: a receiver that
// does not get the CPU reads its socket late (the estimator sees a queue that is not on the
// path) or not at all (the socket's buffer overflows: loss that is not the path's either). To
// tell such a miss from the node's, the test measures how long each process's threads waited
// for a CPU, second by second: the kernel's run-queue wait of every thread
// (/proc/<pid>/task/<tid>/schedstat, second field, in ns).

// cpuWatch samples the run-queue wait of a few processes until stop; its goroutine is its own.
type cpuWatch struct {
	names []string
	pids  []int
	stopc chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	secs map[int64][]float64 // unix second -> ms waited, per process
}

// watchCPU starts sampling the processes (name -> pid) every 200 ms.
func watchCPU(names []string, pids []int) *cpuWatch {
	w := &cpuWatch{names: names, pids: pids, stopc: make(chan struct{}), secs: map[int64][]float64{}}
	w.wg.Add(1)
	go w.run()
	return w
}

func (w *cpuWatch) run() {
	defer w.wg.Done()
	last := make([]int64, len(w.pids))
	for i, p := range w.pids {
		last[i] = runQueueWait(p)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case now := <-tick.C:
			w.mu.Lock()
			s := w.secs[now.Unix()]
			if s == nil {
				s = make([]float64, len(w.pids))
				w.secs[now.Unix()] = s
			}
			for i, p := range w.pids {
				v := runQueueWait(p)
				if v >= last[i] {
					s[i] += float64(v-last[i]) / 1e6
				}
				last[i] = v
			}
			w.mu.Unlock()
		}
	}
}

// stop ends the sampling and waits for it.
func (w *cpuWatch) stop() {
	close(w.stopc)
	w.wg.Wait()
}

// at is the ms each process waited in unix second sec, as "name ms, ...".
func (w *cpuWatch) at(sec int64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.secs[sec]
	parts := make([]string, len(w.names))
	for i, n := range w.names {
		v := 0.0
		if s != nil {
			v = s[i]
		}
		parts[i] = fmt.Sprintf("%s %3.0f", n, v)
	}
	return strings.Join(parts, ", ")
}

// worst is the most any process waited in one second within unix seconds [from, to], which
// process, and in which second.
func (w *cpuWatch) worst(from, to int64) (float64, string, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	best, who, at := 0.0, "", int64(0)
	for sec := from; sec <= to; sec++ {
		for i, v := range w.secs[sec] {
			if v > best {
				best, who, at = v, w.names[i], sec
			}
		}
	}
	return best, who, at
}

// runQueueWait is the ns the threads of process pid have waited on a run queue (0 when it is
// gone).
func runQueueWait(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b)); len(fs) >= 2 {
			v, _ := strconv.ParseInt(fs[1], 10, 64)
			sum += v
		}
	}
	return sum
}
