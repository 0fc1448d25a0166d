package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
)

func TestDecodeEveryNotification(t *testing.T) {
	for _, c := range []struct {
		method, data string
		want         any
	}{
		{proto.MethodParticipantJoined, `{"id":"P1","identity":"bob","joinedAt":5,"metadata":"m"}`, proto.Participant{ID: "P1", Identity: "bob", JoinedAt: 5, Metadata: "m"}},
		{proto.MethodParticipantUpdated, `{"id":"P1","identity":"bob","joinedAt":5,"metadata":"new"}`, proto.Participant{ID: "P1", Identity: "bob", JoinedAt: 5, Metadata: "new"}},
		{proto.MethodParticipantLeft, `{"id":"P1"}`, proto.ParticipantLeft{ID: "P1"}},
		{proto.MethodProducerAdded, `{"id":"PR","participant":"P1","kind":"audio","muted":false}`, proto.Producer{ID: "PR", Participant: "P1", Kind: "audio"}},
		{proto.MethodProducerRemoved, `{"id":"PR","participant":"P1"}`, proto.ProducerRemoved{ID: "PR", Participant: "P1"}},
		{proto.MethodProducerMuted, `{"id":"PR","muted":true,"byServer":true}`, proto.ProducerMuted{ID: "PR", Muted: true, ByServer: true}},
		{proto.MethodProducerMuted, `{"id":"PR","muted":false}`, proto.ProducerMuted{ID: "PR"}},
		{proto.MethodRoomUpdated, `{"metadata":"agenda"}`, proto.RoomUpdated{Metadata: "agenda"}},
		{proto.MethodUnmuteRequested, `{"producer":"PR"}`, proto.UnmuteRequested{Producer: "PR"}},
		{proto.MethodMessage, `{"from":"","identity":"","data":{"a":1}}`, proto.Message{Data: json.RawMessage(`{"a":1}`)}},
		{proto.MethodClosed, `{"reason":"room_deleted"}`, proto.Closed{Reason: proto.ReasonRoomDeleted}},
		{proto.MethodOffer, `{"sdp":"v=0"}`, proto.SDPData{SDP: "v=0"}},
		{proto.MethodTrickle, `{"transport":"recv","candidate":{"candidate":""}}`, proto.TrickleData{Transport: "recv"}},
	} {
		got, err := client.Decode(c.method, json.RawMessage(c.data))
		if err != nil {
			t.Errorf("Decode(%s, %s): %v", c.method, c.data, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Decode(%s, %s) = %#v, want %#v", c.method, c.data, got, c.want)
		}
	}
	if _, err := client.Decode("somethingNew", json.RawMessage(`{}`)); !errors.Is(err, client.ErrUnknownNotification) {
		t.Errorf("an unknown method: %v, want ErrUnknownNotification", err)
	}
	if _, err := client.Decode(proto.MethodRoomUpdated, json.RawMessage(`{"metadata":7}`)); err == nil {
		t.Error("a roomUpdated with a number for metadata decoded")
	}
}

func TestCloseErrorFinal(t *testing.T) {
	for _, c := range []struct {
		e     client.CloseError
		final bool
	}{
		{client.CloseError{Code: proto.CloseReplaced}, true},
		{client.CloseError{Code: proto.CloseRemoved}, true},
		{client.CloseError{Code: proto.CloseRoomDeleted}, true},
		{client.CloseError{Code: 1000, Reason: proto.ReasonRemoved}, true},
		{client.CloseError{Code: proto.CloseSlowClient}, false},
		{client.CloseError{Code: proto.CloseJoinDeadline}, false},
		{client.CloseError{Code: proto.CloseFlood}, false},
		{client.CloseError{Code: -1}, false},
	} {
		if got := c.e.Final(); got != c.final {
			t.Errorf("%+v: Final() = %v, want %v", c.e, got, c.final)
		}
	}
}

// TestErrTellsWhoEndedTheSession: against a real node, Err is nil while the connection is open,
// a final *CloseError (4001, "replaced") when a newer session of the identity ends it, and
// ErrClosed when the client closed it itself.
func TestErrTellsWhoEndedTheSession(t *testing.T) {
	node := testNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(identity string, notes chan<- string) *client.Client {
		t.Helper()
		c, err := client.Dial(ctx, node.URL, client.Options{Token: node.Token("r", identity), LoopbackOnly: true,
			OnNotification: func(method string, _ json.RawMessage) {
				if notes != nil {
					notes <- method
				}
			}})
		if err != nil {
			t.Fatalf("dial %s: %v", identity, err)
		}
		return c
	}
	notes := make(chan string, 16)
	first := dial("alice", notes)
	if err := first.Err(); err != nil {
		t.Fatalf("Err on an open connection: %v", err)
	}
	second := dial("alice", nil)
	defer second.Close()
	select {
	case <-first.Done():
	case <-ctx.Done():
		t.Fatal("the replaced session's connection did not end")
	}
	var closed *client.CloseError
	if !errors.As(first.Err(), &closed) {
		t.Fatalf("Err = %v, want a *CloseError", first.Err())
	}
	if closed.Code != proto.CloseReplaced || closed.Reason != proto.ReasonReplaced || !closed.Final() {
		t.Errorf("Err = %+v, want code 4001, reason replaced, final", closed)
	}
	sawClosed := false
	for len(notes) > 0 {
		sawClosed = sawClosed || <-notes == proto.MethodClosed
	}
	if !sawClosed {
		t.Error("no closed notification before the close")
	}
	first.Close()
	if !errors.As(first.Err(), &closed) {
		t.Errorf("after Close, Err = %v: the node's reason is kept", first.Err())
	}

	third := dial("carol", nil)
	third.Close()
	<-third.Done()
	if err := third.Err(); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Err after Close = %v, want ErrClosed", err)
	}
}
