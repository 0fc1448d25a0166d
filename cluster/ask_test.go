package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestAskGathersEveryNode: an ask reaches every live node and the asker itself, each answers
// with its own part (or its error), and a node that cannot answer is named as unreachable.
func TestAskGathersEveryNode(t *testing.T) {
	net := cluster.NewMemNet()
	net.Start()
	t.Cleanup(net.Close)
	_, _, c1 := memMember(t, net, "n1")
	_, bus2, c2 := memMember(t, net, "n2")
	met(t, c1, c2)
	for _, c := range []*cluster.Cluster{c1, c2} {
		me := c
		c.HandleAsk("echo", func(from string, body json.RawMessage) (any, error) {
			var s string
			if err := json.Unmarshal(body, &s); err != nil {
				return nil, err
			}
			if s == "fail" {
				return nil, &proto.Error{Code: proto.CodeNotFound, Message: "no " + s}
			}
			return fmt.Sprintf("%s from %s to %p", s, from, me), nil
		})
	}
	got, unreachable, err := c1.Ask(context.Background(), "echo", "hi")
	if err != nil || len(unreachable) != 0 || len(got) != 2 {
		t.Fatalf("ask: %v %v %v", got, unreachable, err)
	}
	if got[0].Node != "n1" || got[1].Node != "n2" {
		t.Fatalf("answers from %s, %s", got[0].Node, got[1].Node)
	}
	for _, a := range got {
		var s string
		if a.Error != nil || json.Unmarshal(a.Body, &s) != nil || s[:11] != "hi from n1 " {
			t.Fatalf("answer of %s: %s %v", a.Node, a.Body, a.Error)
		}
	}
	got, _, _ = c2.Ask(context.Background(), "echo", "fail")
	for _, a := range got {
		if a.Error == nil || a.Error.Code != proto.CodeNotFound {
			t.Fatalf("answer of %s: %s %v", a.Node, a.Body, a.Error)
		}
	}
	got, _, _ = c1.Ask(context.Background(), "nobody-answers-this", "x")
	if len(got) != 2 || got[1].Error == nil || got[1].Error.Code != proto.CodeUnknownMethod {
		t.Fatalf("unknown verb: %+v", got)
	}
	// n2 stops answering (its bus is cut) but is still a member for a while: named unreachable.
	bus2.SetConnected(false)
	got, unreachable, err = c1.Ask(context.Background(), "echo", "hi")
	if err != nil || len(got) != 1 || len(unreachable) != 1 || unreachable[0] != "n2" {
		t.Fatalf("with n2 cut: %v %v %v", got, unreachable, err)
	}
}
