//go:build linux

package cluster_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
)

// BenchmarkListRooms is one room API listing (a page of 100 rooms) over N nodes on the
// in-process bus, each node with 100 rooms of 3 participants: the Ask to every node, each
// node's part, the signatures both ways, and the merge. All the nodes run in this process (the
// bus delivers on one goroutine), so cpu-ns/op, the process's CPU time per call, is what the
// whole cluster spends on one; heartbeats every second add a little.
func BenchmarkListRooms(b *testing.B) {
	for _, nodes := range []int{2, 8} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			net := cluster.NewMemNet()
			net.Start()
			b.Cleanup(net.Close)
			var cs []*cluster.Cluster
			for i := 0; i < nodes; i++ {
				n, _, c := memMemberBeat(b, net, fmt.Sprintf("n%d", i), time.Second)
				cs = append(cs, c)
				for r := 0; r < 100; r++ {
					for p := 0; p < 3; p++ {
						if _, err := n.Join(fmt.Sprintf("room-%d-%03d", i, r), fmt.Sprintf("p%d", p), node.Grant{Subscribe: true}, false, quiet{}); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			checkFor(b, 10*time.Second, func() error {
				for _, c := range cs {
					if len(c.Peers()) != nodes-1 {
						return fmt.Errorf("%d peers", len(c.Peers()))
					}
				}
				return nil
			})
			checkFor(b, 30*time.Second, func() error { // the rooms' syncs handled: they are not the call's cost
				if n := net.Pending(); n > 0 {
					return fmt.Errorf("%d deliveries queued", n)
				}
				return nil
			})
			api := cluster.NewAPI(cs[0])
			for _, c := range cs[1:] {
				cluster.NewAPI(c)
			}
			b.ReportAllocs()
			start := processCPU()
			for b.Loop() {
				page, err := api.ListRooms(context.Background(), "", 100)
				if err != nil || len(page.Rooms) != 100 || len(page.Unreachable) > 0 {
					b.Fatalf("%d rooms, unreachable %v, %v", len(page.Rooms), page.Unreachable, err)
				}
			}
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time of the whole process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
