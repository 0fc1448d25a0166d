package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/relay"
)

// TestManyRoomsPipedConcurrently: 300 rooms of one publisher each in us and one viewer each in
// ap, 150 ms away, the viewers arriving within one second on two ap nodes: each ap node wants
// about 150 producers at once. Its pipe manager has up to relay.MaxSetups set-ups under way, so
// the last producer's pipe is up a few round trips (and the hub's join wait) after its demand
// (150 / 32 rounds of 300 ms at most), where a manager serving one producer at a time took 150 round trips (45 s, past the
// run's end: nodes without the media at steady state).
func TestManyRoomsPipedConcurrently(t *testing.T) {
	r := run(t, `
name: many-rooms
duration: 20s
seed: 2
fanout: 3
regions:
  - {name: us, nodes: 2, capacity: 1000}
  - {name: ap, nodes: 2, capacity: 1000}
delays: {us/ap: 150ms}
rooms:
  - name: conf
    count: 300
    publishers: 1
    publisher_regions: [us]
    producers: 1
    publish_at: 1s
    arrivals:
      - {region: ap, start: 3s, end: 4s, per_sec: 300}
`)
	if c := check(t, r, "every node with viewers gets the media"); !c.OK {
		t.Errorf("check %+v", c)
	}
	if r.Pipes.SetupMs.Max == 0 || r.Pipes.MaxQueue < relay.MaxSetups {
		t.Fatalf("no burst of demand: %+v", r.Pipes)
	}
	rtt := 0.3 // s, one request and its reply across the boundary
	rounds := float64(r.Pipes.MaxQueue+relay.MaxSetups-1) / float64(relay.MaxSetups)
	// Plus the hub's join wait: the node that is not its region's top-weight node for a room's
	// producer waits relay.HubJoinWait, on the manager's retry ticks, before it crosses.
	joinWait := float64(relay.HubJoinWait+relay.RetryInterval) / float64(time.Millisecond)
	if limit := (rounds+2)*rtt*1000 + joinWait; r.Pipes.SetupMs.Max > limit {
		t.Errorf("demand to pipe max %.0f ms over %d queued, want under %.0f ms (%v set-ups at once)", r.Pipes.SetupMs.Max, r.Pipes.MaxQueue, limit, relay.MaxSetups)
	}
	t.Log(fmt.Sprintf("pipe set-up: %+v", r.Pipes))
}
