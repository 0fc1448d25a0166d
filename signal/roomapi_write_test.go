package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// lateRooms is the room API handed to a test server before its cluster exists (startNode
// makes the cluster after it takes the options): set makes it the cluster's.
type lateRooms struct {
	mu sync.Mutex
	r  signal.Rooms
}

func (l *lateRooms) set(r signal.Rooms) { l.mu.Lock(); l.r = r; l.mu.Unlock() }
func (l *lateRooms) get() signal.Rooms  { l.mu.Lock(); defer l.mu.Unlock(); return l.r }

func (l *lateRooms) ListRooms(ctx context.Context, after string, limit int) (proto.RoomPage, error) {
	return l.get().ListRooms(ctx, after, limit)
}
func (l *lateRooms) Room(ctx context.Context, name string) (proto.APIRoomDetail, error) {
	return l.get().Room(ctx, name)
}
func (l *lateRooms) Participants(ctx context.Context, room, after string, limit int) (proto.ParticipantPage, error) {
	return l.get().Participants(ctx, room, after, limit)
}
func (l *lateRooms) Participant(ctx context.Context, room, identity string) (proto.APIParticipant, error) {
	return l.get().Participant(ctx, room, identity)
}
func (l *lateRooms) CreateRoom(ctx context.Context, req proto.CreateRoom) (proto.APIRoom, bool, error) {
	return l.get().CreateRoom(ctx, req)
}
func (l *lateRooms) UpdateRoom(ctx context.Context, name string, req proto.UpdateRoom) (proto.APIRoom, error) {
	return l.get().UpdateRoom(ctx, name, req)
}
func (l *lateRooms) DeleteRoom(ctx context.Context, name string) error {
	return l.get().DeleteRoom(ctx, name)
}
func (l *lateRooms) RemoveParticipant(ctx context.Context, room, identity string) error {
	return l.get().RemoveParticipant(ctx, room, identity)
}
func (l *lateRooms) UpdateParticipant(ctx context.Context, room, identity string, req proto.UpdateParticipant) (proto.APIParticipant, error) {
	return l.get().UpdateParticipant(ctx, room, identity, req)
}
func (l *lateRooms) MuteProducer(ctx context.Context, room, identity string, req proto.MuteProducer) (proto.Producer, error) {
	return l.get().MuteProducer(ctx, room, identity, req)
}
func (l *lateRooms) SendData(ctx context.Context, room string, req proto.SendData) error {
	return l.get().SendData(ctx, room, req)
}

// apiNodes starts n clustered nodes n1, n2... over embedded NATS (routes to the first), each
// serving the room API as cmd/cascade wires it, and waits until they see each other.
func apiNodes(t *testing.T, n int) []*env {
	t.Helper()
	return startAPINodes(t, n, 1, 0, nil)
}

// startAPINodes starts n clustered nodes, n<first>, n<first+1>..., node i in regions[i] when
// given, with relay fan-out fanout (0: the default), each serving the room API, and waits until
// they see each other.
func startAPINodes(t *testing.T, n, first, fanout int, regions []string) []*env {
	t.Helper()
	return startClustered(t, n, fanout, func(i int, co *clusterOpts) *env {
		o := node.Options{ID: fmt.Sprintf("n%d", first+i), Workers: 1}
		if i < len(regions) {
			o.Region = regions[i]
		}
		rooms := &lateRooms{}
		e := startNode(t, o, co, func(so *signal.Options) { so.Rooms = rooms })
		rooms.set(cluster.NewAPI(e.cluster))
		return e
	})
}

// api calls the room API of e: method on path (under /api) with token and body (none when
// empty); it returns the status and the body.
func (e *env) api(method, path, token, body string) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+"/api"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// wantAPI fails unless the call answers status with a body containing each of parts.
func (e *env) wantAPI(method, path, token, body string, status int, parts ...string) string {
	e.t.Helper()
	got, b := e.api(method, path, token, body)
	if got != status {
		e.t.Fatalf("%s %s %s: %d %s, want %d", method, path, body, got, b, status)
	}
	for _, p := range parts {
		if !strings.Contains(b, p) {
			e.t.Fatalf("%s %s %s: %d %s, want %q in it", method, path, body, got, b, p)
		}
	}
	return b
}

// TestRoomAPIWriteAuth: every action refuses a request without a token or with a bad one
// (401), with a participant's token (403) and with an expired admin token (401 token_expired),
// and does nothing then.
func TestRoomAPIWriteAuth(t *testing.T) {
	e := apiNodes(t, 1)[0]
	peer := e.join("r", "alice", false, true)
	expired, err := testKeys.Mint(auth.Grant{Admin: true}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	routes := []struct{ method, path, body string }{
		{"POST", "/rooms", `{"name":"x"}`},
		{"PATCH", "/rooms/r", `{"metadata":"m"}`},
		{"DELETE", "/rooms/r", ""},
		{"DELETE", "/rooms/r/participants/alice", ""},
		{"PATCH", "/rooms/r/participants/alice", `{"metadata":"m"}`},
		{"POST", "/rooms/r/participants/alice/mute", `{"producer":"p","muted":true}`},
		{"POST", "/rooms/r/data", `{"data":1}`},
	}
	for _, r := range routes {
		e.wantAPI(r.method, r.path, "", r.body, http.StatusUnauthorized, `"code":"unauthorized"`)
		e.wantAPI(r.method, r.path, "not.a.token", r.body, http.StatusUnauthorized, `"code":"unauthorized"`)
		e.wantAPI(r.method, r.path, expired, r.body, http.StatusUnauthorized, `"code":"token_expired"`)
		e.wantAPI(r.method, r.path, e.token("r", "alice", true, true), r.body, http.StatusForbidden, `"code":"forbidden"`)
	}
	if e.node.Room("x") != nil || peer.hasNote(proto.MethodClosed, "") || peer.hasNote(proto.MethodRoomUpdated, "") {
		t.Fatal("a refused call acted")
	}
}

// TestRoomAPIWriteBadInput: malformed bodies and out-of-range values are bad_request (400),
// with a message naming the field; actions on what does not exist are not_found (404); a
// create answers 201 and then 200.
func TestRoomAPIWriteBadInput(t *testing.T) {
	e := apiNodes(t, 1)[0]
	admin := adminToken(t)
	e.join("r", "alice", false, true)
	bad := func(method, path, body, field string) {
		t.Helper()
		e.wantAPI(method, path, admin, body, http.StatusBadRequest, `"code":"bad_request"`, field)
	}
	bad("POST", "/rooms", `{not json`, "bad JSON")
	bad("POST", "/rooms", ``, "bad JSON")
	bad("POST", "/rooms", `{"name":"x","bogus":1}`, "bogus")
	bad("POST", "/rooms", `{"name":""}`, "name")
	bad("POST", "/rooms", `{"name":"`+strings.Repeat("n", proto.MaxName+1)+`"}`, "name")
	bad("POST", "/rooms", `{"name":"x","maxParticipants":-1}`, "maxParticipants")
	bad("POST", "/rooms", `{"name":"x","emptyTimeout":-1}`, "emptyTimeout")
	bad("POST", "/rooms", `{"name":"x","metadata":"`+strings.Repeat("m", proto.MaxMetadata+1)+`"}`, "metadata")
	bad("PATCH", "/rooms/r", `{"maxParticipants":"ten"}`, "bad JSON")
	bad("PATCH", "/rooms/r", `{"maxParticipants":-3}`, "maxParticipants")
	bad("PATCH", "/rooms/r/participants/alice", `{"metadata":"`+strings.Repeat("m", proto.MaxMetadata+1)+`"}`, "metadata")
	bad("POST", "/rooms/r/participants/alice/mute", `{"muted":true}`, "producer")
	bad("POST", "/rooms/r/data", `{}`, "data")
	bad("POST", "/rooms/r/data", `{"data":1,"identities":[""]}`, "identities[0]")
	bad("DELETE", "/rooms/r/participants/"+strings.Repeat("i", proto.MaxName+1), "", "identity")
	if e.node.Room("x") != nil {
		t.Fatal("a refused create opened the room")
	}

	nf := func(method, path, body string) {
		t.Helper()
		e.wantAPI(method, path, admin, body, http.StatusNotFound, `"code":"not_found"`)
	}
	nf("DELETE", "/rooms/nope", "")
	nf("PATCH", "/rooms/nope", `{"metadata":"m"}`)
	nf("DELETE", "/rooms/r/participants/nobody", "")
	nf("PATCH", "/rooms/r/participants/nobody", `{"metadata":"m"}`)
	nf("POST", "/rooms/r/participants/alice/mute", `{"producer":"PRnone","muted":true}`)
	nf("POST", "/rooms/nope/data", `{"data":"hi"}`)

	e.wantAPI("POST", "/rooms", admin, `{"name":"new room","maxParticipants":5}`, http.StatusCreated, `"name":"new room"`, `"maxParticipants":5`)
	e.wantAPI("POST", "/rooms", admin, `{"name":"new room","metadata":"m2"}`, http.StatusOK, `"metadata":"m2"`, `"maxParticipants":5`)
	// Names travel escaped in paths.
	e.wantAPI("PATCH", "/rooms/"+url.PathEscape("new room"), admin, `{"metadata":"m3"}`, http.StatusOK, `"metadata":"m3"`)
	e.wantAPI("DELETE", "/rooms/"+url.PathEscape("new room"), admin, "", http.StatusNoContent)
	if e.node.Room("new room") != nil {
		t.Fatal("the deleted room is still open")
	}
}

// TestRoomAPIRemoveAcrossNodes: metadata set through either node reaches a participant on n1;
// a DELETE of a participant asked of n1 ends the participant's WebSocket on n2 with closed
// {"reason":"removed"} then close 4003, the others stay; data reaches both nodes.
// A DELETE of the room ends every remaining session, on both nodes, with room_deleted and 4004.
func TestRoomAPIRemoveAcrossNodes(t *testing.T) {
	envs := apiNodes(t, 2)
	n1, n2 := envs[0], envs[1]
	admin := adminToken(t)
	bob := n2.rawJoin("r", "bob")
	alice := n1.join("r", "alice", false, true)
	carol := n2.rawJoin("r", "carol")
	dave := n1.rawJoin("r", "dave")
	checkFor(t, 10*time.Second, func() error {
		if r := n1.node.Room("r"); r == nil || len(r.Participants()) != 4 {
			return fmt.Errorf("n1 does not see the four participants yet")
		}
		return nil
	})

	// Metadata set through n1 of a participant on n2, and of the room: alice (n1) is told.
	n1.wantAPI("PATCH", "/rooms/r/participants/carol", admin, `{"metadata":"speaker"}`, http.StatusOK,
		`"identity":"carol"`, `"metadata":"speaker"`, `"node":"n2"`)
	n2.wantAPI("PATCH", "/rooms/r", admin, `{"metadata":"agenda"}`, http.StatusOK, `"metadata":"agenda"`, `"participants":4`)
	checkFor(t, 10*time.Second, func() error {
		switch {
		case !alice.hasNote(proto.MethodParticipantUpdated, `"metadata":"speaker"`):
			return fmt.Errorf("alice was not told carol's metadata")
		case !alice.hasNote(proto.MethodRoomUpdated, `"metadata":"agenda"`):
			return fmt.Errorf("alice was not told the room's metadata")
		}
		return nil
	})

	n1.wantAPI("DELETE", "/rooms/r/participants/bob", admin, "", http.StatusNoContent)
	bob.closedThenCode(proto.ReasonRemoved, proto.CloseRemoved)
	checkFor(t, 10*time.Second, func() error {
		if !alice.hasNote(proto.MethodParticipantLeft, "") {
			return fmt.Errorf("alice did not see bob leave")
		}
		return nil
	})
	n1.wantAPI("DELETE", "/rooms/r/participants/bob", admin, "", http.StatusNotFound, `"code":"not_found"`)

	// The data action reaches both nodes' sessions on the way.
	n2.wantAPI("POST", "/rooms/r/data", admin, `{"data":{"note":"closing soon"}}`, http.StatusNoContent)
	checkFor(t, 10*time.Second, func() error {
		if !alice.hasNote(proto.MethodMessage, "closing soon") {
			return fmt.Errorf("alice did not get the room's data")
		}
		return nil
	})

	n2.wantAPI("DELETE", "/rooms/r", admin, "", http.StatusNoContent)
	carol.closedThenCode(proto.ReasonRoomDeleted, proto.CloseRoomDeleted)
	dave.closedThenCode(proto.ReasonRoomDeleted, proto.CloseRoomDeleted)
	select {
	case <-alice.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("alice's client is still connected after the room was deleted")
	}
	if !alice.hasNote(proto.MethodClosed, proto.ReasonRoomDeleted) {
		t.Fatal("alice was not told the room was deleted")
	}
	n1.wantAPI("DELETE", "/rooms/r", admin, "", http.StatusNotFound)
}

// TestRoomAPIMuteAcrossNodes: a mute asked of n1 of a publisher on n2 answers the producer
// muted; the publisher hears producerMuted byServer, the viewer on n1 producerMuted; the
// publisher's own unmute is then refused until an unmute request, which it hears.
func TestRoomAPIMuteAcrossNodes(t *testing.T) {
	envs := apiNodes(t, 2)
	n1, n2 := envs[0], envs[1]
	admin := adminToken(t)
	pub, res := publishVideo(t, n2, "r", "pub", false)
	id := res.Producers[0].ID
	viewer := n1.join("r", "viewer", false, true)
	checkFor(t, 10*time.Second, func() error {
		if !viewer.hasNote(proto.MethodProducerAdded, id) && viewer.received(id) == 0 {
			return fmt.Errorf("the viewer does not know the producer yet")
		}
		return nil
	})

	body := n1.wantAPI("POST", "/rooms/r/participants/pub/mute", admin, `{"producer":"`+id+`","muted":true}`, http.StatusOK)
	var got proto.Producer
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.ID != id || !got.Muted || got.Origin != "n2" {
		t.Fatalf("mute answered %s (%v)", body, err)
	}
	checkFor(t, 10*time.Second, func() error {
		switch {
		case !pub.hasNote(proto.MethodProducerMuted, `"byServer":true`):
			return fmt.Errorf("the publisher was not told")
		case !viewer.hasNote(proto.MethodProducerMuted, id):
			return fmt.Errorf("the viewer was not told")
		}
		return nil
	})
	ctx := context.Background()
	err := pub.Request(ctx, proto.MethodMute, proto.MuteData{Producer: id, Muted: false}, nil)
	if err == nil || !strings.Contains(err.Error(), proto.CodeForbidden) {
		t.Fatalf("the publisher's own unmute while locked: %v, want forbidden", err)
	}
	n1.wantAPI("POST", "/rooms/r/participants/viewer/mute", admin, `{"producer":"`+id+`","muted":true}`, http.StatusNotFound)
	n1.wantAPI("POST", "/rooms/r/participants/pub/mute", admin, `{"producer":"`+id+`","muted":false}`, http.StatusOK, `"muted":true`)
	checkFor(t, 10*time.Second, func() error {
		if !pub.hasNote(proto.MethodUnmuteRequested, id) {
			return fmt.Errorf("the publisher did not get the unmute request")
		}
		return nil
	})
	if err := pub.Request(ctx, proto.MethodMute, proto.MuteData{Producer: id, Muted: false}, nil); err != nil {
		t.Fatalf("the publisher's unmute after the request: %v", err)
	}
}
