package signal_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
)

// roomAPICluster is apiNodes with regions: n nodes n0, n1... in one cluster (embedded NATS
// servers over routes), each serving the room API, node i in regions[i] when given.
func roomAPICluster(t *testing.T, n int, regions ...string) []*env {
	t.Helper()
	return startAPINodes(t, n, 0, 3, regions)
}

// apiGet sends GET path to e with token (none when empty) and returns the status and body.
func apiGet(t *testing.T, e *env, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// apiJSON GETs path with an admin token, wants 200, and decodes the body into v.
func apiJSON(t *testing.T, e *env, path string, v any) {
	t.Helper()
	status, b := apiGet(t, e, path, adminToken(t))
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, b)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// TestRoomAPIReadsOverHTTP: a publisher on one node, a subscriber on the other (so the producer
// is relayed); the other node's room API lists the room with both nodes and their regions,
// shows the producer with its origin and its relay edge, and finds each participant where it is
// connected, also in a room whose name must be escaped in the path.
func TestRoomAPIReadsOverHTTP(t *testing.T) {
	envs := roomAPICluster(t, 2, "eu", "us")
	a, b := envs[0], envs[1]
	_, res := publishVideo(t, a, "r", "pub", false)
	id := res.Producers[0].ID
	sub := b.join("r", "sub", false, true)
	waitPackets(t, sub, id)
	odd := "a b/c?d"
	a.join(odd, "x/y", false, true)

	var page proto.RoomPage
	checkFor(t, 5*time.Second, func() error { // the producer is counted once announced
		page = proto.RoomPage{}
		apiJSON(t, b, "/api/rooms", &page)
		if len(page.Rooms) != 2 || page.Rooms[1].Producers != 1 {
			return fmt.Errorf("rooms %+v", page.Rooms)
		}
		return nil
	})
	r := page.Rooms[1]
	if page.Rooms[0].Name != odd || r.Name != "r" || r.Participants != 2 || r.Publishers != 1 || page.Next != "" {
		t.Fatalf("rooms %+v", page)
	}
	if want := "[{n0 eu 1} {n1 us 1}]"; fmt.Sprint(r.Nodes) != want {
		t.Fatalf("nodes of r %v, want %s", r.Nodes, want)
	}
	apiJSON(t, b, "/api/rooms?limit=1", &page)
	if len(page.Rooms) != 1 || page.Next != odd {
		t.Fatalf("first page of one: %+v", page)
	}
	after := page.Next
	page = proto.RoomPage{}
	apiJSON(t, b, "/api/rooms?limit=1&after="+url.QueryEscape(after), &page)
	if len(page.Rooms) != 1 || page.Rooms[0].Name != "r" || page.Next != "" {
		t.Fatalf("second page of one: %+v", page)
	}

	var d proto.APIRoomDetail
	checkFor(t, 5*time.Second, func() error { // the edge is known once the pipe is announced
		d = proto.APIRoomDetail{}
		apiJSON(t, b, "/api/rooms/r", &d)
		if len(d.ProducerList) != 1 || len(d.ProducerList[0].Tree) != 2 {
			return fmt.Errorf("room r: %+v", d)
		}
		return nil
	})
	p := d.ProducerList[0]
	if p.ID != id || p.Origin != "n0" || p.Kind != "video" || fmt.Sprint(p.Tree) != "[{n0 } {n1 n0}]" {
		t.Fatalf("producer %+v", p)
	}

	var ps proto.ParticipantPage
	apiJSON(t, a, "/api/rooms/r/participants", &ps)
	if len(ps.Participants) != 2 || ps.Participants[0].Identity != "pub" || ps.Participants[1].Node != "n1" || ps.Participants[1].Region != "us" {
		t.Fatalf("participants %+v", ps)
	}
	if got := ps.Participants[0].Producers; len(got) != 1 || got[0].ID != id {
		t.Fatalf("producers of pub %+v", got)
	}
	var one proto.APIParticipant
	apiJSON(t, a, "/api/rooms/r/participants/sub", &one)
	if one.Identity != "sub" || one.Node != "n1" || len(one.Producers) != 0 {
		t.Fatalf("sub %+v", one)
	}
	apiJSON(t, b, "/api/rooms/"+url.PathEscape(odd)+"/participants/"+url.PathEscape("x/y"), &one)
	if one.Identity != "x/y" || one.Node != "n0" {
		t.Fatalf("x/y %+v", one)
	}
}

// TestRoomAPIReadErrors: no token, a bad one, one without the admin grant, an unknown room or
// participant, a bad limit and a path the API does not have: each answered with its status and
// the protocol's error object.
func TestRoomAPIReadErrors(t *testing.T) {
	e := roomAPICluster(t, 1)[0]
	e.join("r", "alice", false, true)
	admin := adminToken(t)
	for _, c := range []struct {
		path, token string
		status      int
		code        string
	}{
		{"/api/rooms", "", 401, proto.CodeUnauthorized},
		{"/api/rooms/r", "not-a-token", 401, proto.CodeUnauthorized},
		{"/api/rooms/r/participants", e.token("r", "alice", true, true), 403, proto.CodeForbidden},
		{"/api/nothing-here", "", 401, proto.CodeUnauthorized},
		{"/api/rooms/nope", admin, 404, proto.CodeNotFound},
		{"/api/rooms/nope/participants", admin, 404, proto.CodeNotFound},
		{"/api/rooms/r/participants/bob", admin, 404, proto.CodeNotFound},
		{"/api/rooms?limit=0", admin, 400, proto.CodeBadRequest},
		{"/api/rooms?limit=1001", admin, 400, proto.CodeBadRequest},
		{"/api/rooms?limit=ten", admin, 400, proto.CodeBadRequest},
		{"/api/rooms/r/participants?limit=-1", admin, 400, proto.CodeBadRequest},
		{"/api/rooms?after=" + strings.Repeat("x", proto.MaxName+1), admin, 400, proto.CodeBadRequest},
		{"/api/rooms/" + strings.Repeat("x", proto.MaxName+1), admin, 400, proto.CodeBadRequest},
		{"/api/nothing-here", admin, 404, proto.CodeNotFound},
	} {
		status, b := apiGet(t, e, c.path, c.token)
		var pe proto.Error
		if status != c.status || json.Unmarshal(b, &pe) != nil || pe.Code != c.code || pe.Message == "" {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, status, b, c.status, c.code)
		}
	}
	var page proto.RoomPage
	apiJSON(t, e, "/api/rooms?limit=1000", &page)
	if len(page.Rooms) != 1 || page.Rooms[0].Participants != 1 {
		t.Fatalf("rooms %+v", page)
	}
}
