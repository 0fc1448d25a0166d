package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// TestRoomNodes: a node lists the other nodes with participants in a room open on it (the
// candidates of relay.HubDelay), as their joins reach it, and drops a node whose last
// participant left; a Cluster gives them to its pipes (relay.RoomNodes).
func TestRoomNodes(t *testing.T) {
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	n1, _, c1 := memMember(t, net, "n1")
	n2, _, c2 := memMember(t, net, "n2")
	n3, _, c3 := memMember(t, net, "n3")
	checkFor(t, 5*time.Second, func() error {
		for _, c := range []*cluster.Cluster{c1, c2, c3} {
			if len(c.Peers()) != 2 {
				return fmt.Errorf("peers %v", c.Peers())
			}
		}
		return nil
	})
	var _ relay.RoomNodes = c1
	var ps []*node.Participant
	for _, j := range []struct {
		n  *node.Node
		id string
	}{{n1, "a"}, {n2, "b"}, {n3, "c"}} {
		p, err := j.n.Join("r", j.id, node.Grant{Subscribe: true}, false, quiet{})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	checkFor(t, 5*time.Second, func() error {
		if got := c1.RoomNodes("r"); !slices.Equal(got, []string{"n2", "n3"}) {
			return fmt.Errorf("n1 knows %v in r", got)
		}
		return nil
	})
	if got := c1.RoomNodes("elsewhere"); len(got) != 0 {
		t.Fatalf("a room not open here: %v", got)
	}
	ps[2].Close()
	checkFor(t, 5*time.Second, func() error {
		if got := c1.RoomNodes("r"); !slices.Equal(got, []string{"n2"}) {
			return fmt.Errorf("n1 knows %v in r after n3's last participant left", got)
		}
		return nil
	})
}
