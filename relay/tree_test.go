package relay

import (
	"errors"
	"slices"
	"testing"
)

// The relay tree's parent choice runs with no NATS and no network: it is a pure function.

func TestParentsOriginFirstWhileItHasFanout(t *testing.T) {
	live := map[string]string{"o": "eu", "a": "eu", "b": "eu"}
	tree := Tree{"a": "o"}
	if got := Parents(tree, "o", "c", "eu", 3, live); !slices.Equal(got, []string{"o", "a"}) {
		t.Fatalf("got %v, want [o a]", got)
	}
}

func TestParentsFullCarriersLast(t *testing.T) {
	live := map[string]string{"o": "eu", "a": "eu", "b": "eu", "c": "eu"}
	tree := Tree{"a": "o", "b": "o"} // K=2: the origin is full
	got := Parents(tree, "o", "c", "eu", 2, live)
	if !slices.Equal(got, []string{"a", "b", "o"}) {
		t.Fatalf("got %v, want [a b o]", got)
	}
}

func TestParentsSameRegionFirst(t *testing.T) {
	// The origin is in eu; us1 already carries the producer: a second us node attaches to us1,
	// so media crosses the eu-us boundary once.
	live := map[string]string{"o": "eu", "us1": "us"}
	tree := Tree{"us1": "o"}
	if got := Parents(tree, "o", "us2", "us", 3, live); !slices.Equal(got, []string{"us1", "o"}) {
		t.Fatalf("got %v, want [us1 o]", got)
	}
}

func TestParentsFewestHopsThenFewestChildren(t *testing.T) {
	live := map[string]string{"o": "x", "a": "eu", "b": "eu", "c": "eu", "d": "eu"}
	tree := Tree{"a": "o", "b": "o", "c": "a", "d": "a"} // depth a=b=1, c=d=2; a has 2 children
	got := Parents(tree, "o", "e", "eu", 3, live)
	if !slices.Equal(got, []string{"b", "a", "c", "d", "o"}) {
		t.Fatalf("got %v, want [b a c d o]", got)
	}
}

func TestParentsSkipsDeadNodesAndSelf(t *testing.T) {
	live := map[string]string{"o": "eu"} // a is gone; self is never live to itself
	tree := Tree{"a": "o", "self": "a"}
	if got := Parents(tree, "o", "self", "eu", 3, live); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("got %v, want [o]", got)
	}
	if got := Parents(Tree{}, "o", "self", "eu", 3, map[string]string{}); len(got) != 0 {
		t.Fatalf("origin gone: got %v", got)
	}
}

// TestParentsNeverItsOwnSubtree: an orphan (its parent died, so it left the tree) never picks
// a node of its own subtree, which gets the producer through it: a cycle with no source.
func TestParentsNeverItsOwnSubtree(t *testing.T) {
	live := map[string]string{"o": "eu", "c": "eu", "d": "eu"}
	tree := Tree{"c": "self", "d": "c"} // self's parent b died and left the tree; K=1
	if got := Parents(tree, "o", "self", "eu", 1, live); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("got %v, want [o]", got)
	}
	if !tree.Below("d", "self") || tree.Below("self", "d") || (Tree{"a": "b", "b": "a"}).Below("a", "x") {
		t.Fatal("Below")
	}
}

func TestTreeDepth(t *testing.T) {
	tree := Tree{"a": "o", "b": "a", "loop1": "loop2", "loop2": "loop1"}
	for id, want := range map[string]int{"o": 0, "a": 1, "b": 2, "x": len(tree) + 1} {
		if got := tree.Depth(id, "o"); got != want {
			t.Errorf("depth(%s) = %d, want %d", id, got, want)
		}
	}
	if got := tree.Depth("loop1", "o"); got <= len(tree)-1 {
		t.Errorf("a loop ends: depth %d", got)
	}
}

func TestTreesRemoveNodeDetachesItsChildren(t *testing.T) {
	ts := NewTrees()
	ts.Piped("r", "p", "a", "o")
	ts.Piped("r", "p", "b", "a")
	ts.Piped("r", "p", "c", "o")
	ts.RemoveNode("a")
	if got := ts.Edges("p"); !slices.Equal(got, []Edge{{Node: "c", Parent: "o"}}) {
		t.Fatalf("edges %v", got)
	}
	ts.Piped("r", "p", "c", "")
	if got := ts.Edges("p"); len(got) != 0 {
		t.Fatalf("unpiped: edges %v", got)
	}
	ts.Piped("r", "p", "c", "o")
	ts.ForgetRoom("r")
	if got := ts.Edges("p"); len(got) != 0 {
		t.Fatalf("room forgotten: edges %v", got)
	}
}

// TestTreeK: nodes joining one by one, each choosing its parent with Parents and announcing it,
// build a tree where no node has more than K children and the depth grows like log_K(n).
func TestTreeK(t *testing.T) {
	const k, n = 3, 40
	live := map[string]string{"o": "eu"}
	tree := Tree{}
	for i := 0; i < n; i++ {
		id := string(rune('A' + i))
		parent := Parents(tree, "o", id, "eu", k, live)[0]
		tree[id] = parent
		live[id] = "eu"
	}
	for id := range live {
		if c := tree.Children(id); c > k {
			t.Fatalf("%s has %d children, K=%d", id, c, k)
		}
	}
	deepest := 0
	for id := range tree {
		deepest = max(deepest, tree.Depth(id, "o"))
	}
	if deepest > 4 { // 3 + 9 + 27 = 39 nodes within depth 3, the 40th at 4
		t.Fatalf("depth %d for %d nodes at K=%d", deepest, n, k)
	}
}

// TestParentsDrainingLast: a draining carrier is never a new child's parent while another
// carrier exists, even a full one or one in another region; when it alone carries the producer
// (the origin drains), it is still a candidate: the media has no other source.
func TestParentsDrainingLast(t *testing.T) {
	live := map[string]string{"o": "eu", "a": "eu", "b": "us"}
	tree := Tree{"a": "o", "b": "o"}
	if got := Parents(tree, "o", "c", "eu", 3, live, "a"); !slices.Equal(got, []string{"o", "b", "a"}) {
		t.Fatalf("got %v, want [o b a]: draining a last", got)
	}
	// K=2: o is full; a (same region, depth 1) would come first, but it drains.
	if got := Parents(tree, "o", "c", "eu", 2, live, "a"); !slices.Equal(got, []string{"b", "o", "a"}) {
		t.Fatalf("got %v, want [b o a]", got)
	}
	// Without the draining argument the order is the usual one.
	if got := Parents(tree, "o", "c", "eu", 2, live); got[0] != "a" {
		t.Fatalf("got %v, want a first when nothing drains", got)
	}
	if got := Parents(Tree{}, "o", "c", "eu", 3, map[string]string{"o": "eu"}, "o"); !slices.Equal(got, []string{"o"}) {
		t.Fatalf("got %v, want [o]: a draining origin still relays its producer", got)
	}
}

// TestTreeKDraining: nodes joining one by one while one mid-tree node drains never attach to it.
func TestTreeKDraining(t *testing.T) {
	const k, n = 3, 30
	live := map[string]string{"o": "eu"}
	tree := Tree{}
	for i := 0; i < n; i++ {
		id := string(rune('A' + i))
		parent := Parents(tree, "o", id, "eu", k, live, "A")[0]
		if parent == "A" {
			t.Fatalf("%s attached to the draining A (tree %v)", id, tree)
		}
		tree[id] = parent
		live[id] = "eu"
	}
	if c := tree.Children("A"); c != 0 {
		t.Fatalf("draining A has %d children", c)
	}
}

// TestAccept: a parent takes children while it has fan-out left, but keeps its last slot for
// its own region until a child of its region has one.
func TestAccept(t *testing.T) {
	for _, c := range []struct {
		fanout      int
		child       string
		kids        []string
		wantRefused bool
	}{
		{3, "eu", nil, false},
		{3, "ap", []string{"eu"}, false},
		{3, "ap", []string{"eu", "eu"}, true},  // the last slot is us's
		{3, "us", []string{"eu", "ap"}, false}, // ... and us takes it
		{3, "ap", []string{"eu", "us"}, false}, // us has one already
		{3, "us", []string{"eu", "us", "ap"}, true},
		{2, "eu", nil, false},
		{2, "ap", []string{"eu"}, true},
		{1, "eu", nil, false}, // with fan-out 1 nothing is kept
	} {
		err := Accept(c.fanout, "us", c.child, c.kids)
		if refused := errors.Is(err, ErrFanoutFull); refused != c.wantRefused || (err != nil && !refused) {
			t.Errorf("Accept(K=%d, child %s, kids %v) = %v, want refused %v", c.fanout, c.child, c.kids, err, c.wantRefused)
		}
	}
}

// TestParentsSkipsCutOffSubtrees: when a node dies, the trees forget it and its children, and
// its grandchildren are cut off from the origin. Two orphans of one region must not pick each
// other's cut-off subtree (the sim found them feeding each other in a cycle with no source):
// only carriers whose parents reach the origin are candidates.
func TestParentsSkipsCutOffSubtrees(t *testing.T) {
	// o (us) -> hub (eu) -> a, b (eu); a -> a1, b -> b1. The hub died: RemoveNode(hub).
	ts := NewTrees()
	for child, parent := range map[string]string{"hub": "o", "a": "hub", "b": "hub", "a1": "a", "b1": "b", "x": "o"} {
		ts.Piped("r", "p", child, parent)
	}
	ts.RemoveNode("hub")
	live := map[string]string{"o": "us", "x": "us", "a": "eu", "b": "eu", "a1": "eu", "b1": "eu"}
	got := Parents(ts.Tree("p"), "o", "a", "eu", 3, live)
	if want := []string{"o", "x"}; !slices.Equal(got, want) {
		t.Fatalf("orphan a's parents %v, want %v (b's cut-off subtree is no candidate)", got, want)
	}
}
