package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/cascade-sfu/cascade/node"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recorder is a participant's Listener that keeps every notification, as JSON.
type recorder struct {
	mu    sync.Mutex
	notes []string // "method data"
}

func (r *recorder) Notify(method string, data any) {
	b, _ := json.Marshal(data)
	r.mu.Lock()
	r.notes = append(r.notes, method+" "+string(b))
	r.mu.Unlock()
}

// has tells whether a notification of method whose data is exactly data (JSON) arrived.
func (r *recorder) has(method, data string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.notes {
		if n == method+" "+data {
			return true
		}
	}
	return false
}

// count is how many notifications of method arrived.
func (r *recorder) count(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := 0
	for _, n := range r.notes {
		if strings.HasPrefix(n, method+" ") {
			c++
		}
	}
	return c
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.notes, "\n")
}

// eventLog records the node's events by type name.
type eventLog struct {
	mu     sync.Mutex
	events []node.Event
}

func (l *eventLog) Event(e node.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, e := range l.events {
		if fmt.Sprintf("%T", e) == "node."+kind {
			c++
		}
	}
	return c
}

func (l *eventLog) find(kind string) node.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if fmt.Sprintf("%T", e) == "node."+kind {
			return e
		}
	}
	return nil
}

func adminNode(t *testing.T, o node.Options) (*node.Node, *eventLog) {
	t.Helper()
	o.Workers, o.LoopbackOnly, o.TCPPort = 1, true, node.TCPDisabled
	n, err := node.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	ev := &eventLog{}
	n.SetEvents(ev)
	return n, ev
}

func join(t *testing.T, n *node.Node, room, identity string, g node.Grant) (*node.Participant, *recorder) {
	t.Helper()
	l := &recorder{}
	p, err := n.Join(room, identity, g, false, l)
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	return p, l
}

// publishLive joins identity to room with listener l and publishes a VP8 track whose media
// flows, and returns the participant and its live producer's id.
func publishLive(t *testing.T, n *node.Node, room, identity string, l node.Listener) (*node.Participant, string) {
	t.Helper()
	pc, track, _ := sendonlyVP8(t, clientAPI(t))
	p, err := n.Join(room, identity, node.Grant{Publish: true, Subscribe: true}, false, l)
	if err != nil {
		t.Fatal(err)
	}
	answer, _, err := p.Publish(vp8pub.Offer(t, pc), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := uint32(1); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: i * 900, Marker: true}, Payload: []byte{0x10, 1, 2, 3}})
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return p, liveProducer(t, p)
}

// TestOpenRoom: the room API opens a room with nobody in it (its settings, the default empty
// timeout, RoomOpened once) and, called again, updates its settings: the participants learn
// the new metadata (roomUpdated), a join sees the room's settings and cap.
func TestOpenRoom(t *testing.T) {
	n, ev := adminNode(t, node.Options{Limits: node.Limits{Rooms: 1}})
	r, created, err := n.OpenRoom("r", node.RoomSettings{Metadata: "m1", MaxParticipants: 2})
	if err != nil || !created {
		t.Fatalf("open: created %v, %v", created, err)
	}
	s := r.Settings()
	if s.Metadata != "m1" || s.MaxParticipants != 2 || s.EmptyTimeout != node.DefaultAPIEmptyTimeout || s.CreatedAt == 0 || s.UpdatedAt == 0 {
		t.Fatalf("settings %+v", s)
	}
	if n.Room("r") != r || ev.count("RoomOpened") != 1 {
		t.Fatalf("room not open here (%d RoomOpened)", ev.count("RoomOpened"))
	}
	if _, _, err := n.OpenRoom("s", node.RoomSettings{}); !errors.Is(err, node.ErrTooManyRooms) {
		t.Fatalf("a second room past --max-rooms 1: %v", err)
	}
	a, la := join(t, n, "r", "a", node.Grant{Subscribe: true})
	if a.Room() != r || ev.count("RoomOpened") != 1 {
		t.Fatal("the join did not enter the open room")
	}
	join(t, n, "r", "b", node.Grant{Subscribe: true})
	if _, err := n.Join("r", "c", node.Grant{}, false, nopListener{}); !errors.Is(err, node.ErrRoomFull) || !strings.Contains(err.Error(), "(2 participants)") {
		t.Fatalf("a third participant of a room of at most 2: %v", err)
	}
	r2, created, err := n.OpenRoom("r", node.RoomSettings{Metadata: "m2", MaxParticipants: 3, EmptyTimeout: 5})
	if err != nil || created || r2 != r {
		t.Fatalf("open again: %v, created %v", err, created)
	}
	if s2 := r.Settings(); s2.Metadata != "m2" || s2.MaxParticipants != 3 || s2.EmptyTimeout != 5 || s2.CreatedAt != s.CreatedAt || s2.UpdatedAt <= s.UpdatedAt {
		t.Fatalf("settings after the update %+v (before %+v)", s2, s)
	}
	if !la.has(node.EventRoomUpdated, `{"metadata":"m2"}`) {
		t.Fatalf("no roomUpdated:\n%s", la)
	}
	if _, err := n.Join("r", "c", node.Grant{}, false, nopListener{}); err != nil {
		t.Fatalf("a third participant of a room of at most 3: %v", err)
	}
	n.Drain()
	if _, _, err := n.OpenRoom("t", node.RoomSettings{}); !errors.Is(err, node.ErrDraining) {
		t.Fatalf("open while draining: %v", err)
	}
	if _, created, err := n.OpenRoom("r", node.RoomSettings{Metadata: "m3"}); err != nil || created || r.Settings().Metadata != "m3" {
		t.Fatalf("update of an open room while draining: %v", err)
	}
}

// TestUpdateSettings: the fields present change, metadata changes are told (once per change),
// and the version only grows; AdoptSettings takes newer settings only.
func TestUpdateSettings(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	a, la := join(t, n, "r", "a", node.Grant{})
	r := a.Room()
	before := r.Settings()
	if before.UpdatedAt != 0 || before.CreatedAt == 0 {
		t.Fatalf("a room opened by a join: %+v", before)
	}
	m, mp := "hello", 7
	s := r.UpdateSettings(node.SettingsUpdate{Metadata: &m, MaxParticipants: &mp})
	if s.Metadata != "hello" || s.MaxParticipants != 7 || s.EmptyTimeout != 0 || s != r.Settings() {
		t.Fatalf("after the update %+v", s)
	}
	et := 9
	s2 := r.UpdateSettings(node.SettingsUpdate{EmptyTimeout: &et})
	if s2.Metadata != "hello" || s2.MaxParticipants != 7 || s2.EmptyTimeout != 9 || s2.UpdatedAt <= s.UpdatedAt {
		t.Fatalf("after the second update %+v", s2)
	}
	if la.count(node.EventRoomUpdated) != 1 || !la.has(node.EventRoomUpdated, `{"metadata":"hello"}`) {
		t.Fatalf("roomUpdated once for one metadata change:\n%s", la)
	}
	old := node.RoomSettings{Metadata: "stale", CreatedAt: s.CreatedAt - 1000, UpdatedAt: s2.UpdatedAt - 1}
	if !r.AdoptSettings(old) {
		t.Fatal("an earlier creation time not adopted")
	}
	if got := r.Settings(); got.Metadata != "hello" || got.CreatedAt != s.CreatedAt-1000 {
		t.Fatalf("older settings adopted over a newer change: %+v", got)
	}
	newer := node.RoomSettings{Metadata: "fresh", MaxParticipants: 4, CreatedAt: s.CreatedAt, UpdatedAt: s2.UpdatedAt + 1}
	if !r.AdoptSettings(newer) {
		t.Fatal("newer settings not adopted")
	}
	if got := r.Settings(); got.Metadata != "fresh" || got.MaxParticipants != 4 || got.EmptyTimeout != 0 || got.CreatedAt != s.CreatedAt-1000 {
		t.Fatalf("after adopting newer settings: %+v", got)
	}
	if !la.has(node.EventRoomUpdated, `{"metadata":"fresh"}`) {
		t.Fatalf("adopted metadata not told:\n%s", la)
	}
	if r.AdoptSettings(newer) {
		t.Fatal("the same settings adopted twice")
	}
}

// TestEmptyTimeout: a room closes with its last participant by default; with the node's empty
// timeout or its own it stays that long (a rejoin keeps it), then closes with RoomClosed.
func TestEmptyTimeout(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	a, _ := join(t, n, "plain", "a", node.Grant{})
	a.Close()
	if n.Room("plain") != nil || ev.count("RoomClosed") != 1 {
		t.Fatal("a room without an empty timeout stays open after its last participant left")
	}

	long, ev2 := adminNode(t, node.Options{EmptyRoomTimeout: time.Hour})
	a, _ = join(t, long, "r", "a", node.Grant{})
	r := a.Room()
	a.Close()
	if long.Room("r") != r || ev2.count("RoomClosed") != 0 {
		t.Fatal("a room with the node's empty timeout of an hour closed with its last participant")
	}
	b, _ := join(t, long, "r", "b", node.Grant{})
	if b.Room() != r {
		t.Fatal("a rejoin opened a new room")
	}

	// The room's own timeout, short: it closes on its own once empty.
	ok := 1
	r.UpdateSettings(node.SettingsUpdate{EmptyTimeout: &ok})
	b.Close()
	if long.Room("r") != r {
		t.Fatal("closed at once despite its own timeout")
	}
	checkFor(t, 10*time.Second, func() error {
		if long.Room("r") != nil || ev2.count("RoomClosed") != 1 {
			return errors.New("the empty room is still open")
		}
		return nil
	})
	c, _ := join(t, long, "r", "c", node.Grant{})
	if c.Room() == r {
		t.Fatal("a join after the room closed entered the closed room")
	}

	// Close ends the rooms that wait for their timeout too (and their timers).
	c.Close()
	if _, _, err := long.OpenRoom("api", node.RoomSettings{}); err != nil {
		t.Fatal(err)
	}
	if long.Room("r") == nil || long.Room("api") == nil {
		t.Fatal("empty rooms not waiting")
	}
	closed := ev2.count("RoomClosed")
	long.Close()
	if long.Room("r") != nil || long.Room("api") != nil || ev2.count("RoomClosed") != closed+2 {
		t.Fatalf("after Close: %d more RoomClosed, want 2", ev2.count("RoomClosed")-closed)
	}
}

// TestRemoveParticipant: the identity's session gets closed {removed} and ends; the others
// see it leave; an identity without a session here removes nothing.
func TestRemoveParticipant(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	a, la := join(t, n, "r", "a", node.Grant{})
	b, lb := join(t, n, "r", "b", node.Grant{})
	if got := b.Room().RemoveParticipant("nobody", node.ReasonRemoved); got != 0 {
		t.Fatalf("removed %d sessions of an identity not here", got)
	}
	if got := b.Room().RemoveParticipant("a", node.ReasonRemoved); got != 1 {
		t.Fatalf("removed %d sessions, want 1", got)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("the removed participant is not closed")
	}
	if !la.has(node.EventClosed, `{"reason":"removed"}`) {
		t.Fatalf("no closed {removed}:\n%s", la)
	}
	if !lb.has(node.EventParticipantLeft, fmt.Sprintf(`{"id":%q}`, a.ID())) || lb.count(node.EventClosed) != 0 {
		t.Fatalf("the other participant's notifications:\n%s", lb)
	}
	if ps := b.Room().Participants(); len(ps) != 1 || ps[0].Identity != "b" {
		t.Fatalf("participants %+v", ps)
	}
}

// TestSetParticipantMetadata: the token's metadata is the participant's first; an update
// reaches everyone, the participant too, and the cluster layer.
func TestSetParticipantMetadata(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	a, la := join(t, n, "r", "a", node.Grant{Metadata: `{"role":"host"}`})
	_, lb := join(t, n, "r", "b", node.Grant{})
	if a.Info().Metadata != `{"role":"host"}` {
		t.Fatalf("token metadata not the participant's: %+v", a.Info())
	}
	c, _ := join(t, n, "r", "c", node.Grant{Metadata: "m"})
	if want, _ := json.Marshal(c.Info()); !lb.has(node.EventParticipantJoined, string(want)) || !strings.Contains(string(want), `"metadata":"m"`) {
		t.Fatalf("participantJoined without the metadata:\n%s", lb)
	}
	if _, ok := a.Room().SetParticipantMetadata("nobody", "x"); ok {
		t.Fatal("metadata set for an identity not here")
	}
	info, ok := a.Room().SetParticipantMetadata("a", "new")
	if !ok || info.Metadata != "new" || info.ID != a.ID() {
		t.Fatalf("set: %+v %v", info, ok)
	}
	want, _ := json.Marshal(info)
	for name, l := range map[string]*recorder{"a": la, "b": lb} {
		if !l.has(node.EventParticipantUpdated, string(want)) {
			t.Fatalf("%s got no participantUpdated %s:\n%s", name, want, l)
		}
	}
	e, _ := ev.find("ParticipantUpdated").(node.ParticipantUpdated)
	if e.Participant != info || e.Room != a.Room() {
		t.Fatalf("event %+v", e)
	}
	for _, p := range a.Room().Participants() {
		if p.ID == a.ID() && p.Metadata != "new" {
			t.Fatalf("listed %+v", p)
		}
	}
}

// TestServerMessage: a message from the server reaches the identities listed, or everyone.
func TestServerMessage(t *testing.T) {
	n, _ := adminNode(t, node.Options{})
	a, la := join(t, n, "r", "a", node.Grant{})
	_, lb := join(t, n, "r", "b", node.Grant{})
	_, lc := join(t, n, "r", "c", node.Grant{})
	r := a.Room()
	if got := r.ServerMessage(json.RawMessage(`{"x":1}`), []string{"a", "c", "nobody"}); got != 2 {
		t.Fatalf("sent to %d, want 2", got)
	}
	note := `{"data":{"x":1},"from":"","identity":""}`
	if !la.has(node.EventMessage, note) || !lc.has(node.EventMessage, note) || lb.count(node.EventMessage) != 0 {
		t.Fatalf("a:\n%s\nb:\n%s\nc:\n%s", la, lb, lc)
	}
	if got := r.ServerMessage(json.RawMessage(`"all"`), nil); got != 3 {
		t.Fatalf("sent to %d, want 3", got)
	}
	if !lb.has(node.EventMessage, `{"data":"all","from":"","identity":""}`) {
		t.Fatalf("b:\n%s", lb)
	}
}

// TestDeleteRoom: every session gets closed {room_deleted} and ends, and the room closes at
// once whatever its empty timeout; a room with nobody in it closes too.
func TestDeleteRoom(t *testing.T) {
	n, ev := adminNode(t, node.Options{EmptyRoomTimeout: time.Hour})
	r, _, err := n.OpenRoom("r", node.RoomSettings{EmptyTimeout: 3600})
	if err != nil {
		t.Fatal(err)
	}
	a, la := join(t, n, "r", "a", node.Grant{})
	b, lb := join(t, n, "r", "b", node.Grant{})
	if got := r.Delete(); got != 2 {
		t.Fatalf("deleted %d sessions, want 2", got)
	}
	for _, p := range []*node.Participant{a, b} {
		select {
		case <-p.Done():
		default:
			t.Fatal("a session of the deleted room is open")
		}
	}
	for _, l := range []*recorder{la, lb} {
		if !l.has(node.EventClosed, `{"reason":"room_deleted"}`) {
			t.Fatalf("no closed {room_deleted}:\n%s", l)
		}
	}
	if n.Room("r") != nil || ev.count("RoomClosed") != 1 {
		t.Fatalf("room open after delete (%d RoomClosed)", ev.count("RoomClosed"))
	}
	empty, _, err := n.OpenRoom("e", node.RoomSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if got := empty.Delete(); got != 0 || n.Room("e") != nil || ev.count("RoomClosed") != 2 {
		t.Fatalf("empty room: %d sessions, open %v", got, n.Room("e") != nil)
	}
}

// TestMuteByServer: the room API mutes a producer for everyone (byServer); the publisher's own
// unmute is refused until the room API asks it to unmute, which unmutes nothing by itself.
func TestMuteByServer(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	lp := &recorder{}
	pub, id := publishLive(t, n, "r", "pub", lp)
	_, lv := join(t, n, "r", "viewer", node.Grant{Subscribe: true})
	r := pub.Room()
	if _, err := r.MuteByServer("viewer", id, true); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("mute of another identity's producer: %v", err)
	}
	if _, err := r.MuteByServer("pub", "PRnone", true); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("mute of no producer: %v", err)
	}
	info, err := r.MuteByServer("pub", id, true)
	if err != nil || !info.Muted {
		t.Fatalf("mute: %+v %v", info, err)
	}
	note := fmt.Sprintf(`{"byServer":true,"id":%q,"muted":true}`, id)
	for name, l := range map[string]*recorder{"publisher": lp, "viewer": lv} {
		if !l.has(node.EventProducerMuted, note) {
			t.Fatalf("%s got no %s:\n%s", name, note, l)
		}
	}
	if e, _ := ev.find("ProducerMuted").(node.ProducerMuted); e.ID != id || !e.Muted || !e.ByServer {
		t.Fatalf("event %+v", e)
	}
	err = pub.Mute(id, false)
	if !errors.Is(err, node.ErrForbidden) || err.Error() != "muted by a moderator" {
		t.Fatalf("the publisher's unmute while locked: %v", err)
	}
	if err := pub.Mute(id, true); err != nil { // muting it again is its own business
		t.Fatalf("the publisher's mute while locked: %v", err)
	}
	info, err = r.MuteByServer("pub", id, false)
	if err != nil || !info.Muted {
		t.Fatalf("unmute request: %+v %v (the producer must stay muted)", info, err)
	}
	if !lp.has(node.EventUnmuteRequested, fmt.Sprintf(`{"producer":%q}`, id)) || lv.count(node.EventUnmuteRequested) != 0 {
		t.Fatalf("unmuteRequested to the publisher only:\npublisher:\n%s\nviewer:\n%s", lp, lv)
	}
	if err := pub.Mute(id, false); err != nil {
		t.Fatalf("the publisher's unmute after the request: %v", err)
	}
	if !lv.has(node.EventProducerMuted, fmt.Sprintf(`{"id":%q,"muted":false}`, id)) {
		t.Fatalf("viewer not told of the unmute:\n%s", lv)
	}
	for _, p := range r.Producers() {
		if p.ID == id && p.Muted {
			t.Fatal("still muted")
		}
	}
}

// TestRemoteUpdates: another node's participant update and server mute reach the local
// participants (participantUpdated; producerMuted with byServer, even for a producer muted
// already), and an empty room's new timeout applies from the change.
func TestRemoteUpdates(t *testing.T) {
	n, ev := adminNode(t, node.Options{})
	a, la := join(t, n, "r", "a", node.Grant{Subscribe: true})
	r := a.Room()
	remote := node.ParticipantInfo{ID: "PAremote", Identity: "x", JoinedAt: 1}
	r.AddRemoteParticipant(remote, "n2")
	remote.Metadata = "m"
	r.UpdateRemoteParticipant(remote, "n2")
	if want, _ := json.Marshal(remote); !la.has(node.EventParticipantUpdated, string(want)) {
		t.Fatalf("no participantUpdated %s:\n%s", want, la)
	}
	for _, p := range r.Participants() {
		if p.ID == remote.ID && p.Metadata != "m" {
			t.Fatalf("the remote copy %+v", p)
		}
	}
	if _, err := r.AddRemoteProducer(node.ProducerInfo{ID: "PRremote", Participant: remote.ID, Kind: "audio", Codec: "audio/opus", ClockRate: 48000, Channels: 2, Muted: true}, "n2"); err != nil {
		t.Fatal(err)
	}
	r.SetRemoteMutedBy("PRremote", true, true)
	if !la.has(node.EventProducerMuted, `{"byServer":true,"id":"PRremote","muted":true}`) {
		t.Fatalf("no byServer mute of a producer muted already:\n%s", la)
	}
	r.SetRemoteMutedBy("PRremote", false, false)
	if !la.has(node.EventProducerMuted, `{"id":"PRremote","muted":false}`) {
		t.Fatalf("no unmute:\n%s", la)
	}

	// An empty room with an hour to wait gets a timeout of one second: it closes soon.
	long, _, err := n.OpenRoom("e", node.RoomSettings{EmptyTimeout: 3600})
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	long.UpdateSettings(node.SettingsUpdate{EmptyTimeout: &one})
	checkFor(t, 10*time.Second, func() error {
		if n.Room("e") != nil || ev.count("RoomClosed") != 1 {
			return errors.New("the empty room waits for its old timeout")
		}
		return nil
	})
}
