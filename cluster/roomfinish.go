package cluster

import (
	"context"
	"encoding/json"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// Settling a room's finish when its last participants leave several nodes at once. A node whose
// room closes while it still counts other nodes' participants does not finish the room; when
// those nodes close in the same instant, each counting the others', none would. So such a node
// asks again, finishCheck later, whether anyone has participants in the room: when nobody does,
// and nobody finished it, the least of the nodes still waiting on it finishes it. Every node
// remembers for finishMemory that it finished a room, or waits on it, and says so when asked.

const (
	finishCheck  = time.Second
	finishMemory = 10 * time.Second
	verbRoomLife = "roomLife"
)

// finishState is what a node remembers of a room that closed on it.
type finishState struct {
	at   time.Time
	done bool // this node finished the room (else it waits on it)
}

// lifeAnswer is a node's answer to verbRoomLife about a room: its participants in it, and
// whether it waits on the room's finish or finished it lately.
type lifeAnswer struct {
	Participants int  `json:"participants"`
	Pending      bool `json:"pending,omitempty"`
	Done         bool `json:"done,omitempty"`
}

// SettlesFinish tells whether node self finishes a room, given every node's answer about it
// (self's included): nobody has participants in it, nobody finished it, and self is the least
// of the nodes waiting on it. An error answer settles nothing.
func SettlesFinish(self string, answers []Answer) bool {
	owner := self
	for _, a := range answers {
		var l lifeAnswer
		if a.Error != nil || json.Unmarshal(a.Body, &l) != nil || l.Participants > 0 || l.Done {
			return false
		}
		if l.Pending && a.Node < owner {
			owner = a.Node
		}
	}
	return owner == self
}

// noteFinish remembers that room closed here: finished by this node (done) or waiting.
func (c *Cluster) noteFinish(room string, done bool) {
	now := c.o.Clock.Now()
	c.life.mu.Lock()
	defer c.life.mu.Unlock()
	if c.life.finishes == nil {
		c.life.finishes = map[string]finishState{}
	}
	for name, f := range c.life.finishes {
		if now.Sub(f.at) > finishMemory {
			delete(c.life.finishes, name)
		}
	}
	c.life.finishes[room] = finishState{at: now, done: done}
}

// answerLife answers verbRoomLife: this node's participants in the room, and its finish state.
func (c *Cluster) answerLife(_ string, body json.RawMessage) (any, error) {
	var room string
	if err := json.Unmarshal(body, &room); err != nil || room == "" {
		return nil, badRequest("roomLife: want a room name")
	}
	var a lifeAnswer
	if r := c.n.Room(room); r != nil {
		local, _ := r.LocalState()
		a.Participants = len(local)
	}
	c.life.mu.Lock()
	if f, ok := c.life.finishes[room]; ok && c.o.Clock.Now().Sub(f.at) <= finishMemory {
		a.Pending, a.Done = !f.done, f.done
	}
	c.life.mu.Unlock()
	return a, nil
}

// waitFinish starts settling the finish of room r, which closed here while other nodes still
// had participants in it.
func (c *Cluster) waitFinish(r *node.Room) {
	c.noteFinish(r.Name(), false)
	select {
	case <-c.stop:
		return
	default:
	}
	c.wg.Add(1)
	go c.settleFinish(r)
}

// settleFinish asks, finishCheck after room r closed here, whether the room finished; see
// SettlesFinish. A node that does not answer leaves the room unsettled: no event rather than a
// wrong one.
func (c *Cluster) settleFinish(r *node.Room) {
	defer c.wg.Done()
	t := time.NewTimer(finishCheck)
	defer t.Stop()
	select {
	case <-c.stop:
		return
	case <-t.C:
	}
	c.mu.Lock()
	reopened := c.rooms[r.Name()] != nil
	c.mu.Unlock()
	if reopened {
		return // it goes on here: its next close decides
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultAskTimeout)
	defer cancel()
	answers, unreachable, err := c.Ask(ctx, verbRoomLife, r.Name())
	if err != nil || len(unreachable) > 0 || !SettlesFinish(c.me, answers) {
		return
	}
	c.noteFinish(r.Name(), true)
	c.o.Observer.Event(RoomFinished{RoomClosed: node.RoomClosed{Room: r}})
}
