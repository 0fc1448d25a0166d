package relay

import (
	"slices"
	"sort"
	"sync"
)

// Tree is one producer's relay tree: every node that carries the producer, but its origin, and
// the node it gets the producer from (child -> parent).
type Tree map[string]string

// Depth is the number of relay hops from origin to id (len(t)+1 for a node not attached).
func (t Tree) Depth(id, origin string) int {
	d := 0
	for id != origin && d <= len(t) {
		parent, ok := t[id]
		if !ok {
			return len(t) + 1
		}
		id = parent
		d++
	}
	return d
}

// Below tells whether id gets the producer through ancestor (directly or further down).
func (t Tree) Below(id, ancestor string) bool {
	for hops := 0; hops <= len(t); hops++ {
		parent, ok := t[id]
		if !ok {
			return false
		}
		if parent == ancestor {
			return true
		}
		id = parent
	}
	return false
}

// Children counts the nodes id relays the producer to.
func (t Tree) Children(id string) int {
	n := 0
	for _, parent := range t {
		if parent == id {
			n++
		}
	}
	return n
}

// Parents orders the nodes that can relay a producer (of tree t, published on origin) to self,
// a node of region selfRegion. live maps every live node other than self to its region; a
// carrier that is not live is no candidate, nor one that gets the producer through self (its
// subtree: that would be a cycle without a source), nor one whose parents no longer reach the
// origin (a subtree cut off when a node above it left: two orphans of one dead node, each
// ranking the other's subtree first, would feed each other and nothing). draining are live
// nodes that are draining:
// they come last, after every other carrier, so a new child attaches to a draining node only
// when nothing else carries the producer (its origin drains and relays it alone), and a child of
// a draining node finds its new parent first (Pipes' hand-off). Then carriers with fan-out left
// (fewer than fanout children) come first, then full ones (the tree may be stale); within each,
// carriers in self's region first (so media crosses a region boundary once), then the fewest
// hops from the origin, then the fewest children, then the id. Parents is a pure function: the
// same inputs give the same order on every node and in a simulator.
func Parents(t Tree, origin, self, selfRegion string, fanout int, live map[string]string, draining ...string) []string {
	type cand struct {
		id                       string
		draining, full, otherRgn bool
		depth, kids              int
	}
	carriers := []string{origin}
	for child := range t {
		carriers = append(carriers, child)
	}
	var cs []cand
	for _, id := range carriers {
		region, ok := live[id]
		if id == self || !ok || t.Below(id, self) {
			continue
		}
		depth := t.Depth(id, origin)
		if depth > len(t) {
			continue // cut off from the origin (its parent left): it relays nothing until it re-attaches
		}
		kids := t.Children(id)
		cs = append(cs, cand{id: id, draining: slices.Contains(draining, id), full: fanout > 0 && kids >= fanout,
			otherRgn: region != selfRegion, depth: depth, kids: kids})
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		switch {
		case a.draining != b.draining:
			return !a.draining
		case a.full != b.full:
			return !a.full
		case a.otherRgn != b.otherRgn:
			return !a.otherRgn
		case a.depth != b.depth:
			return a.depth < b.depth
		case a.kids != b.kids:
			return a.kids < b.kids
		}
		return a.id < b.id
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
}

// Accept decides a pipe request on the parent's side (ServePipe's fan-out rule), a pure
// function like Parents: a node of region parentRegion, relaying a producer to children of
// the regions in kids, takes one more child of region childRegion if it has fan-out left, but
// keeps its last free slot for a node of its own region unless one is among its children
// already (with fanout 2 or more). Without that, the first askers, often other regions' hubs,
// can take every slot of the origin, and the nodes of the origin's own region then get the
// producer from another region: media would cross a boundary twice (out and back).
func Accept(fanout int, parentRegion, childRegion string, kids []string) error {
	if len(kids) >= fanout {
		return ErrFanoutFull
	}
	if fanout < 2 || childRegion == parentRegion || len(kids) < fanout-1 {
		return nil
	}
	if slices.Contains(kids, parentRegion) {
		return nil
	}
	return ErrFanoutFull
}

// Edge is one relay hop of a producer's tree.
type Edge struct {
	Node   string `json:"node"`
	Parent string `json:"parent"`
}

// Trees is what this node knows of the relay trees of the producers of its open rooms, from
// the nodes' piped and unpiped announcements and its own pipes. It is safe for concurrent use.
type Trees struct {
	mu    sync.Mutex
	trees map[string]Tree   // by producer
	rooms map[string]string // producer -> room
}

// NewTrees returns empty trees.
func NewTrees() *Trees {
	return &Trees{trees: make(map[string]Tree), rooms: make(map[string]string)}
}

// Piped records that child gets producer (of room) from parent; an empty parent removes child.
func (ts *Trees) Piped(room, producer, child, parent string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.trees[producer]
	if parent == "" {
		if t != nil {
			delete(t, child)
		}
		return
	}
	if t == nil {
		t = make(Tree)
		ts.trees[producer] = t
		ts.rooms[producer] = room
	}
	t[child] = parent
}

// Tree returns a copy of producer's tree.
func (ts *Trees) Tree(producer string) Tree {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make(Tree, len(ts.trees[producer]))
	for c, p := range ts.trees[producer] {
		out[c] = p
	}
	return out
}

// Edges lists producer's tree, sorted by node.
func (ts *Trees) Edges(producer string) []Edge {
	var out []Edge
	for c, p := range ts.Tree(producer) {
		out = append(out, Edge{Node: c, Parent: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// RemoveNode forgets a node that left: it and the nodes it relayed to leave every tree (those
// re-attach and announce it).
func (ts *Trees) RemoveNode(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.trees {
		delete(t, id)
		for child, parent := range t {
			if parent == id {
				delete(t, child)
			}
		}
	}
}

// ForgetProducer forgets an ended producer's tree.
func (ts *Trees) ForgetProducer(producer string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.trees, producer)
	delete(ts.rooms, producer)
}

// ForgetRoom forgets the trees of a room's producers.
func (ts *Trees) ForgetRoom(room string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for p, r := range ts.rooms {
		if r == room {
			delete(ts.trees, p)
			delete(ts.rooms, p)
		}
	}
}
