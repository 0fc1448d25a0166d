package cluster

import (
	"sort"
	"sync"
	"time"
)

// departed remembers the nodes that left the membership recently. A node dropped for silence
// may only be slow (its heartbeats queued behind a burst of room events, say) and still hold
// sessions: until its participants' resume grace is over, the room API asks it too and names
// it unreachable when it does not answer, instead of returning the other nodes' parts as if they
// were the whole cluster.
type departed struct {
	window time.Duration

	mu sync.Mutex
	at map[string]time.Time // by node id: when it left
}

func newDeparted(window time.Duration) *departed {
	return &departed{window: window, at: make(map[string]time.Time)}
}

// add records that node id left at now.
func (d *departed) add(id string, now time.Time) {
	d.mu.Lock()
	d.at[id] = now
	d.mu.Unlock()
}

// recent is the nodes that left within the window before now, sorted; it forgets the others.
func (d *departed) recent(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for id, at := range d.at {
		if now.Sub(at) > d.window {
			delete(d.at, id)
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
