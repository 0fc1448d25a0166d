package signal

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestWireObjects checks that node's descriptions of participants and producers reach the wire
// unchanged through proto's types: same JSON tags, same bytes, and null and [] kept apart.
func TestWireObjects(t *testing.T) {
	for _, c := range []struct{ node, wire reflect.Type }{
		{reflect.TypeFor[node.ParticipantInfo](), reflect.TypeFor[proto.Participant]()},
		{reflect.TypeFor[node.ProducerInfo](), reflect.TypeFor[proto.Producer]()},
	} {
		// The conversions in protocol.go already require the same fields in the same order.
		for i := range c.node.NumField() {
			nf, wf := c.node.Field(i), c.wire.Field(i)
			if nf.Tag.Get("json") != wf.Tag.Get("json") {
				t.Errorf("%s.%s has tag %q, %s.%s has %q", c.node, nf.Name, nf.Tag.Get("json"), c.wire, wf.Name, wf.Tag.Get("json"))
			}
		}
	}

	pa := node.ParticipantInfo{ID: "p1", Identity: "alice", JoinedAt: 1700000000123}
	pr := node.ProducerInfo{ID: "v1", Participant: "p1", Kind: "video", Mid: "0", Codec: "video/VP8", Muted: true,
		Origin: "n2", ClockRate: 90000, Channels: 2, Fmtp: "x=1"}
	for _, c := range []struct{ node, wire any }{
		{pa, participant(pa)},
		{pr, producer(pr)},
		{[]node.ProducerInfo{pr}, each([]node.ProducerInfo{pr}, producer)},
		{[]node.ProducerInfo{}, each([]node.ProducerInfo{}, producer)},
		{[]node.ParticipantInfo(nil), each([]node.ParticipantInfo(nil), participant)},
	} {
		want, _ := json.Marshal(c.node)
		got, _ := json.Marshal(c.wire)
		if string(got) != string(want) {
			t.Errorf("on the wire %s, node says %s", got, want)
		}
	}
}
