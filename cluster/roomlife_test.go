package cluster

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// TestStartsRoom: the first local participant starts the room unless a remote one joined
// before it; a tie in joinedAt goes to the smaller id, so two nodes that see each other's
// participant agree on one.
func TestStartsRoom(t *testing.T) {
	p := func(id string, at int64) node.ParticipantInfo { return node.ParticipantInfo{ID: id, JoinedAt: at} }
	for _, c := range []struct {
		name   string
		first  node.ParticipantInfo
		remote []node.ParticipantInfo
		want   bool
	}{
		{"alone", p("PA1", 100), nil, true},
		{"others joined later", p("PA1", 100), []node.ParticipantInfo{p("PA2", 101), p("PA3", 150)}, true},
		{"one joined earlier", p("PA1", 100), []node.ParticipantInfo{p("PA3", 150), p("PA2", 99)}, false},
		{"tie, smaller id here", p("PA1", 100), []node.ParticipantInfo{p("PA2", 100)}, true},
		{"tie, smaller id there", p("PA2", 100), []node.ParticipantInfo{p("PA1", 100)}, false},
	} {
		if got := StartsRoom(c.first, c.remote); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Two nodes, each with the other's first participant: exactly one starts the room.
	a, b := p("PAa", 100), p("PAb", 100)
	if StartsRoom(a, []node.ParticipantInfo{b}) == StartsRoom(b, []node.ParticipantInfo{a}) {
		t.Fatal("both or neither started the room")
	}
}

// TestFinishesRoom: a room finishes where it closes with no remote participant left, if it
// had a local participant there.
func TestFinishesRoom(t *testing.T) {
	for _, c := range []struct {
		name     string
		hadLocal bool
		remote   map[string]int
		want     bool
	}{
		{"last anywhere", true, nil, true},
		{"counts of zero", true, map[string]int{"n2": 0}, true},
		{"others remain", true, map[string]int{"n2": 0, "n3": 2}, false},
		{"never joined here", false, nil, false},
	} {
		if got := FinishesRoom(c.hadLocal, c.remote); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// recorder is an Observer keeping the events it gets.
type recorder struct{ evs []node.Event }

func (r *recorder) Event(e node.Event) { r.evs = append(r.evs, e) }

// TestObserveRoomLife: fed through a Cluster's observe path with a RoomState, the first join
// of a room with no earlier remote participant gives RoomStarted before the join, a second
// join none; the close gives RoomFinished after the RoomClosed only when no remote participant
// remains; a room reopened starts again.
func TestObserveRoomLife(t *testing.T) {
	rec := &recorder{}
	stopped := make(chan struct{})
	close(stopped) // a closed room's later check (roomfinish.go) is not this test's
	c := &Cluster{o: Options{Observer: rec, Clock: WallClock{}}, state: NewRoomState(), stop: stopped}
	r1 := new(node.Room) // observe reads only its name ("")
	names := func() (out []string) {
		for _, e := range rec.evs {
			switch e.(type) {
			case RoomStarted:
				out = append(out, "started")
			case RoomFinished:
				out = append(out, "finished")
			case node.ParticipantJoined:
				out = append(out, "joined")
			case node.RoomClosed:
				out = append(out, "closed")
			default:
				out = append(out, "other")
			}
		}
		rec.evs = nil
		return out
	}
	event := func(ev node.Event) { c.observe(ev, c.finishing(ev)) }
	event(node.RoomOpened{Room: r1})
	event(node.ParticipantJoined{Room: r1, Participant: node.ParticipantInfo{ID: "PA1", JoinedAt: 10}})
	event(node.ParticipantJoined{Room: r1, Participant: node.ParticipantInfo{ID: "PA2", JoinedAt: 20}})
	event(node.ParticipantLeft{Room: r1, ID: "PA1"})
	event(node.ParticipantLeft{Room: r1, ID: "PA2"})
	event(node.RoomClosed{Room: r1})
	if got := names(); strings.Join(got, " ") != "other started joined joined other other closed finished" {
		t.Fatalf("events %v", got)
	}

	// Reopened, with a remote participant (n2's, joined earlier) in the room's state: no
	// start; closed while it is there: no finish.
	room2 := new(node.Room)
	c.state.Open("")
	c.state.Apply("", Stamp{Node: "n2", Inc: "i", Seq: 1}, ParticipantJoinedMsg{Participant: node.ParticipantInfo{ID: "PAx", JoinedAt: 5}}, time.Time{})
	event(node.RoomOpened{Room: room2})
	event(node.ParticipantJoined{Room: room2, Participant: node.ParticipantInfo{ID: "PA3", JoinedAt: 30}})
	event(node.RoomClosed{Room: room2})
	if got := names(); strings.Join(got, " ") != "other joined closed" {
		t.Fatalf("events with a remote participant %v", got)
	}

	// Closed late, when the room had opened here again (the node's RoomClosed of the old room
	// after the new one's RoomOpened): the room goes on, no finish.
	c.state.Close("")
	old, reopened := new(node.Room), new(node.Room)
	event(node.RoomOpened{Room: old})
	event(node.ParticipantJoined{Room: old, Participant: node.ParticipantInfo{ID: "PA4", JoinedAt: 40}})
	c.rooms = map[string]*room{"": {r: reopened}}
	event(node.RoomClosed{Room: old})
	if got := names(); strings.Join(got, " ") != "other started joined closed" {
		t.Fatalf("events of a room reopened before its close %v", got)
	}
}

// TestSettlesFinish: the least node waiting on a room finishes it, once nobody has
// participants in it and nobody finished it; any error answer settles nothing.
func TestSettlesFinish(t *testing.T) {
	ans := func(node, body string) Answer { return Answer{Node: node, Body: json.RawMessage(body)} }
	for _, c := range []struct {
		self    string
		answers []Answer
		want    bool
	}{
		{"n2", []Answer{ans("n1", `{"participants":0,"pending":true}`), ans("n2", `{"participants":0,"pending":true}`)}, false},
		{"n1", []Answer{ans("n1", `{"participants":0,"pending":true}`), ans("n2", `{"participants":0,"pending":true}`)}, true},
		{"n1", []Answer{ans("n1", `{"participants":0,"pending":true}`), ans("n2", `{"participants":1}`)}, false},
		{"n1", []Answer{ans("n1", `{"participants":0,"pending":true}`), ans("n2", `{"participants":0,"done":true}`)}, false},
		{"n2", []Answer{ans("n1", `{"participants":0}`), ans("n2", `{"participants":0,"pending":true}`)}, true},
		{"n1", []Answer{ans("n1", `{"participants":0,"pending":true}`), {Node: "n2", Error: &proto.Error{Code: proto.CodeInternal}}}, false},
	} {
		if got := SettlesFinish(c.self, c.answers); got != c.want {
			t.Errorf("%s with %v: %v, want %v", c.self, c.answers, got, c.want)
		}
	}
}
