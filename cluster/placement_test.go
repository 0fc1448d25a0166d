package cluster

import (
	"slices"
	"testing"

	"github.com/cascade-sfu/cascade/node"
)

// TestPlaceAvoids: a resume never goes to the node it left, even when that node is the best by
// every other rule; Rank lists the rest best first.
func TestPlaceAvoids(t *testing.T) {
	self := stats("me", "eu", 100)
	peers := []node.Stats{stats("dead", "eu", 0), stats("b", "eu", 10), stats("c", "us", 5), {ID: "d", Draining: true, HTTPURL: "http://d"}}
	in := PlacementInput{Self: self, Peers: peers, Region: "eu", Avoid: map[string]bool{"dead": true}}
	if got, want := Place(in), (Decision{Redirect: true, Node: "b", HTTPURL: "http://b"}); got != want {
		t.Fatalf("Place avoiding dead: %+v, want %+v", got, want)
	}
	var ids []string
	for _, s := range Rank(in) {
		ids = append(ids, s.ID)
	}
	if want := []string{"b", "me"}; !slices.Equal(ids, want) {
		t.Fatalf("Rank in eu: %v, want %v", ids, want)
	}
	in.Region, in.Avoid["me"] = "", true
	ids = ids[:0]
	for _, s := range Rank(in) {
		ids = append(ids, s.ID)
	}
	if want := []string{"c", "b"}; !slices.Equal(ids, want) {
		t.Fatalf("Rank anywhere, this node avoided: %v, want %v", ids, want)
	}
}

// TestPlaceSpreadsWhenFull: a node at its capacity (Full) ranks after every other node of the
// region, even when it carries the room and the others do not; without Full, carrying wins.
func TestPlaceSpreadsWhenFull(t *testing.T) {
	self := stats("me", "eu", 0)
	peers := []node.Stats{stats("hot", "eu", 500), stats("cold", "eu", 400)}
	in := PlacementInput{Self: self, Peers: peers, Region: "eu", Carrying: map[string]bool{"hot": true}}
	if got := Place(in); got.Node != "hot" {
		t.Fatalf("Place without capacity: %+v, want the carrying node hot", got)
	}
	in.Full = func(s node.Stats) bool { return s.Consumers >= 500 }
	if got := Place(in); got.Redirect {
		t.Fatalf("Place with hot full: %+v, want to stay on me (not full, least loaded)", got)
	}
	in.Self = stats("me", "eu", 600)
	if got := Place(in); got.Node != "cold" {
		t.Fatalf("Place with hot and me full: %+v, want cold", got)
	}
	var ids []string
	for _, s := range Rank(in) {
		ids = append(ids, s.ID)
	}
	if want := []string{"cold", "hot", "me"}; !slices.Equal(ids, want) {
		t.Fatalf("Rank: %v, want %v", ids, want)
	}
}

// TestPlaceSpread: with Spread, this node keeps a client unless the best node is more than
// Spread below it, whether or not either carries the room, and a carrying node far above the
// least loaded loses its preference; without it, the carrying node wins.
func TestPlaceSpread(t *testing.T) {
	in := PlacementInput{Self: stats("me", "eu", 300), Peers: []node.Stats{stats("b", "eu", 900), stats("c", "eu", 0)}, Region: "eu",
		Carrying: map[string]bool{"b": true}}
	if got := Place(in); got.Node != "b" {
		t.Fatalf("Place without Spread: %+v, want the carrying node b", got)
	}
	in.Spread = 500
	if got := Place(in); got.Redirect {
		t.Fatalf("Place, spread 500, c only 300 below: %+v, want to stay", got)
	}
	var ids []string
	for _, s := range Rank(in) {
		ids = append(ids, s.ID)
	}
	if want := []string{"c", "me", "b"}; !slices.Equal(ids, want) {
		t.Fatalf("Rank with spread 500: %v, want %v (b is 900 above c: no preference)", ids, want)
	}
	in.Spread, in.Peers[0].Consumers = 1000, 100
	if got := Place(in); got.Redirect {
		t.Fatalf("Place, spread 1000: %+v, want to stay (b within spread, carrying no longer counts)", got)
	}
	in.Self.Consumers = 1200
	if got := Place(in); got.Node != "b" {
		t.Fatalf("Place, this node 1100 above b: %+v, want b", got)
	}
}
