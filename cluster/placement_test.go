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
