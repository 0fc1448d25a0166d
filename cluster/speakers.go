package cluster

import (
	"encoding/json"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// evSpeakers (on cascade.room.<token>.ev) carries a node's list of the room's speakers: the
// audio producers it is the origin of that speak, ranked, loudest first (node.Speakers). Each
// node ranks the room's list from every node's list and tells its own participants.
const evSpeakers = "speakers"

// maxSpeakersBody bounds the body of a speakers message: node.MaxSpeakers entries of ids and a
// level take a few hundred bytes; a larger body is refused unread.
const maxSpeakersBody = 4 << 10

type speakersBody struct {
	Speakers []proto.Speaker `json:"speakers"`
}

// publishSpeakers sends this node's list of a room's speakers to the other nodes.
func (c *Cluster) publishSpeakers(e node.Speakers) {
	c.publish(e.Room.Name(), evSpeakers, speakersBody{Speakers: e.Speakers})
}

// onSpeakers hands another node's list to the room. The envelope says which node sent it; the
// room counts only the entries that name that node's own audio producers, so a node cannot
// speak for another's, and a malformed or oversized list is refused whole.
func (c *Cluster) onSpeakers(r *node.Room, e Envelope) {
	var b speakersBody
	if len(e.Body) > maxSpeakersBody || json.Unmarshal(e.Body, &b) != nil || len(b.Speakers) > node.MaxSpeakers {
		c.reject(rejMalformed, e.Node)
		return
	}
	r.SetRemoteSpeakers(e.Node, b.Speakers)
}
