package reallab

import (
	"slices"
	"testing"
)

// TestExpectRedirects5 pins what Cascade's placement and tree functions make of Redirects5 (audio
// only: one track), worked out by hand from their rules: a viewer asking a node of its region
// stays; one asking another region goes to the least loaded node of its region (ties by id),
// unless the asked node has the room open, when a node carrying the room comes first; each
// new carrier attaches to a carrier of its region with fan-out left, else to the carrier
// nearest the origin.
func TestExpectRedirects5(t *testing.T) {
	s := Redirects5()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	got := Expect(s)
	t.Logf("expected:\n%s", got)
	// Viewer 1 (us) asks eu-2, where the room is not open: us-1 and us-2 are idle, us-1 by id.
	// Viewer 3 (eu) asks us-2, where the room is not open: least loaded eu node: eu-2 (eu-1
	// has a viewer and two relay children by then, each a consumer).
	// Viewer 4 (us) asks ap-1, where the room is open: us-1 carries it, us-2 does not: us-1.
	// Viewer 9 (eu) asks ap-1 (open): both eu nodes carry it; eu-1 has 4 consumers (1 viewer,
	// 3 relay children), eu-2 2: eu-2. Viewer 10 (us) asks eu-1 (open): us-1 again. Viewer 12
	// (eu) asks us-1 (open): eu-1 4, eu-2 3: eu-2. Viewer 13 asks us-2, in its region: it
	// stays, the first on us-2.
	want := []string{"eu-1", "us-1", "ap-1", "eu-2", "us-1", "ap-1", "eu-2", "us-1", "ap-1", "eu-2", "us-1", "ap-1", "eu-2", "us-2", "ap-1"}
	if !slices.Equal(got.Placement, want) {
		t.Errorf("placement %v\nwant      %v", got.Placement, want)
	}
	wantTree := map[string]string{"us-1": "eu-1", "ap-1": "eu-1", "eu-2": "eu-1", "us-2": "us-1"}
	for c, p := range wantTree {
		if got.Tree[c] != p {
			t.Errorf("%s <- %q, want %s", c, got.Tree[c], p)
		}
	}
	if len(got.Tree) != len(wantTree) || got.Crossings != 2 {
		t.Errorf("tree %v with %d crossings, want %v with 2", got.Tree, got.Crossings, wantTree)
	}
	if p := got.PathMs["us-2"]; p != 35+2*s.HopMs {
		t.Errorf("server path to us-2 %.2f ms, want 35 ms and two hops", p)
	}
}
