package signal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// drainCluster is newCluster with the servers' drain options: n nodes over one NATS cluster,
// every node seeing every other.
func drainCluster(t *testing.T, n int, timeout time.Duration, mo signal.MigrateOptions) []*env {
	t.Helper()
	with := func(so *signal.Options) {
		so.DrainTimeout, so.Migrate = timeout, mo
		so.Registerer = so.Gatherer.(*prometheus.Registry)
	}
	return startClustered(t, n, 3, func(i int, co *clusterOpts) *env {
		return startNode(t, node.Options{ID: fmt.Sprintf("n%d", i), Workers: 1}, co, with)
	})
}

// adminDrain drains e as the chart's preStop hook does: POST /admin/drain with an admin token.
func adminDrain(t *testing.T, e *env) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/admin/drain", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken(t))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("drain: %s", res.Status)
	}
}

// migrateNote returns p's migrate notification, if it has one.
func (p *peer) migrateNote() (proto.MigrateData, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.notes {
		if n.method == proto.MethodMigrate {
			var d proto.MigrateData
			_ = json.Unmarshal(n.data, &d)
			return d, true
		}
	}
	return proto.MigrateData{}, false
}

// TestDrainMigratesInBatches: a draining node tells its sessions to move to the other node, a
// batch per interval; the sessions that leave count as migrated, the one that stays is cut at
// the deadline; the other node's sessions are told nothing.
func TestDrainMigratesInBatches(t *testing.T) {
	const batch, interval, sessions = 2, 600 * time.Millisecond, 5
	envs := drainCluster(t, 2, 4*time.Second, signal.MigrateOptions{Batch: batch, Interval: interval})
	a, b := envs[0], envs[1]
	var peers []*peer
	for i := 0; i < sessions; i++ {
		peers = append(peers, a.join("r", fmt.Sprint("p", i), false, true))
	}
	other := b.join("r", "on-b", false, true)
	if other.URL != b.ws {
		t.Fatalf("the session on b was placed on %s", other.URL)
	}
	for _, p := range peers {
		if p.URL != a.ws {
			t.Fatalf("%s joined %s, want a", p.Join.Participant.Identity, p.URL)
		}
	}

	start := time.Now()
	adminDrain(t, a)
	// When each peer first holds its note, polled far finer than the interval.
	seen := map[int]time.Duration{}
	for len(seen) < sessions {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("only %d of %d sessions told to migrate", len(seen), sessions)
		}
		for i, p := range peers {
			if _, ok := seen[i]; !ok {
				if _, ok := p.migrateNote(); ok {
					seen[i] = time.Since(start)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	var at []time.Duration
	for i, p := range peers {
		d, _ := p.migrateNote()
		if d.Node != b.node.ID() || d.URL != b.ws || d.Reason != "drain" {
			t.Fatalf("peer %d told %+v, want node %s at %s for drain", i, d, b.node.ID(), b.ws)
		}
		if dl := time.UnixMilli(d.Deadline); dl.Before(start) || dl.After(start.Add(5*time.Second)) {
			t.Fatalf("deadline %v, want the drain's (4 s after %v)", dl, start)
		}
		at = append(at, seen[i])
	}
	// Batches by time order: the notes of one batch go out together, the next batch an
	// interval later; a gap of half an interval separates two batches.
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	sizes := []int{1}
	for i := 1; i < len(at); i++ {
		if at[i]-at[i-1] > interval/2 {
			sizes = append(sizes, 1)
		} else {
			sizes[len(sizes)-1]++
		}
	}
	if fmt.Sprint(sizes) != "[2 2 1]" {
		t.Fatalf("batches %v (notes at %v), want [2 2 1]", sizes, at)
	}
	if _, ok := other.migrateNote(); ok {
		t.Fatal("a session of the node that is not draining was told to migrate")
	}

	// Four leave (as a client does once it resumed on b); the fifth is cut at the deadline.
	for _, p := range peers[:sessions-1] {
		_ = p.Close()
	}
	last := peers[sessions-1]
	select {
	case <-last.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session still here was not closed at the drain deadline")
	}
	var ce *client.CloseError
	if err := last.Err(); !errors.As(err, &ce) || ce.Code != int(websocket.StatusGoingAway) {
		t.Fatalf("cut session ended with %v, want close 1001", err)
	}
	checkFor(t, 10*time.Second, func() error {
		m := a.srv.Migrations()
		if m != (signal.Migrations{Told: sessions, Moved: sessions - 1, Cut: 1}) {
			return fmt.Errorf("migrations %+v", m)
		}
		return nil
	})
	if got := a.metric(`cascade_migrations_total{result="moved"}`); got != sessions-1 {
		t.Fatalf("moved metric %v", got)
	}
	if got := a.metric(`cascade_migrations_total{result="cut"}`); got != 1 {
		t.Fatalf("cut metric %v", got)
	}
}

// TestDrainSingleNodeTellsNobody: with no other node to go to, a draining node sends no migrate;
// its sessions go on past the deadline (until the process closes them) and count as no_target.
func TestDrainSingleNodeTellsNobody(t *testing.T) {
	a := drainCluster(t, 1, time.Second, signal.MigrateOptions{Batch: 2, Interval: 50 * time.Millisecond})[0]
	var peers []*peer
	for i := 0; i < 3; i++ {
		peers = append(peers, a.join("r", fmt.Sprint("p", i), false, true))
	}
	adminDrain(t, a)
	checkFor(t, 10*time.Second, func() error {
		if m := a.srv.Migrations(); m != (signal.Migrations{NoTarget: 3}) {
			return fmt.Errorf("migrations %+v", m)
		}
		return nil
	})
	for i, p := range peers {
		if d, ok := p.migrateNote(); ok {
			t.Fatalf("peer %d told to migrate to %+v with no other node", i, d)
		}
		select {
		case <-p.Done():
			t.Fatalf("peer %d closed at the deadline: %v", i, p.Err())
		default:
		}
	}
	if got := a.metric(`cascade_migrations_total{result="no_target"}`); got != 3 {
		t.Fatalf("no_target metric %v", got)
	}
}

// parentOf is the node e gets producer pid from ("" when not piped there).
func parentOf(e *env, room, pid string) string {
	for _, edge := range e.pipes.Piped(room) {
		if edge.Node == pid {
			return edge.Parent
		}
	}
	return ""
}

// TestDrainHandsOffRelayChildren: a mid-tree node that drains hands its relay children to
// another carrier, make-before-break: the child's viewer keeps receiving, the draining node
// stops relaying, and its own viewers (not yet migrated) keep receiving through it.
func TestDrainHandsOffRelayChildren(t *testing.T) {
	envs := newCluster(t, 4, 2) // K=2: the origin takes two children, the fourth node attaches below
	o, mid, other, leaf := envs[0], envs[1], envs[2], envs[3]
	_, res := publishVideo(t, o, "r", "pub", false)
	pid := producerIDs(res)[0]
	subMid := mid.join("r", "s1", false, true)
	waitPackets(t, subMid, pid)
	subOther := other.join("r", "s2", false, true)
	waitPackets(t, subOther, pid)
	subLeaf := leaf.join("r", "s3", false, true)
	waitPackets(t, subLeaf, pid)
	if got := parentOf(leaf, "r", pid); got != mid.node.ID() {
		t.Fatalf("leaf's parent %q, want %s (the origin is full, ids break the tie)", got, mid.node.ID())
	}

	mid.srv.Drain()
	checkFor(t, 15*time.Second, func() error {
		if got := parentOf(leaf, "r", pid); got != other.node.ID() {
			return fmt.Errorf("leaf's parent %q, want %s", got, other.node.ID())
		}
		if got := mid.metric(`cascade_relay_pipes{direction="out"}`); got != 0 {
			return fmt.Errorf("draining node still relays %v pipes out", got)
		}
		return nil
	})
	// Media goes on at the leaf (from its new parent) and at the draining node (its viewer has
	// not moved yet).
	for _, s := range []*peer{subLeaf, subMid} {
		before := s.received(pid)
		checkFor(t, 10*time.Second, func() error {
			if s.received(pid) < before+20 {
				return fmt.Errorf("%s: %d packets since the hand-off", s.Join.Participant.Identity, s.received(pid)-before)
			}
			return nil
		})
	}
	if got := parentOf(mid, "r", pid); got != o.node.ID() {
		t.Fatalf("draining node's own parent %q, want the origin", got)
	}
}

// resumer is a peer that resumes (Options.Resume) and records its resumes.
type resumer struct {
	*peer
	mu      sync.Mutex
	resumes []client.Resume
}

func (r *resumer) migrated() []client.Resume {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Resume(nil), r.resumes...)
}

func (e *env) joinResuming(room, identity string, publish bool) *resumer {
	e.t.Helper()
	r := &resumer{}
	p, err := e.dialWith(room, identity, publish, true, func(o *client.Options) {
		o.Resume = true
		o.OnResume = func(res client.Resume) {
			r.mu.Lock()
			r.resumes = append(r.resumes, res)
			r.mu.Unlock()
		}
	})
	if err != nil {
		e.t.Fatalf("join %s: %v", identity, err)
	}
	r.peer = p
	return r
}

// TestDrainClientsFollowMigrate: Go clients on a draining node follow migrate to the other
// node: the publisher and the subscriber keep their participant ids there, the publisher its
// producer id; the subscriber receives media on the new node, so does a viewer on the other
// node that never moved, and it hears no leave, no second join, no producerRemoved and no second
// producerAdded. The old node ends up with no session and counts both as moved.
func TestDrainClientsFollowMigrate(t *testing.T) {
	envs := drainCluster(t, 2, 30*time.Second, signal.MigrateOptions{})
	a, b := envs[0], envs[1]
	pub := a.joinResuming("r", "pub", true)
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	pid := producerIDs(res)[0]
	sub := a.joinResuming("r", "sub", false)
	viewer := b.join("r", "viewer", false, true)
	checkFor(t, 15*time.Second, func() error {
		if sub.counter(pid).Load() < 10 || viewer.received(pid) < 10 {
			return fmt.Errorf("media before the drain: sub %d, viewer %d", sub.counter(pid).Load(), viewer.received(pid))
		}
		return nil
	})
	pubID, subID := pub.Join.Participant.ID, sub.Join.Participant.ID

	adminDrain(t, a)
	checkFor(t, 30*time.Second, func() error {
		for _, r := range []*resumer{pub, sub} {
			got := r.migrated()
			if len(got) != 1 || !got[0].Migrated || got[0].URL != b.ws || got[0].Fresh {
				return fmt.Errorf("resumes %+v", got)
			}
		}
		if n := a.node.Stats().Participants; n != 0 {
			return fmt.Errorf("the draining node still has %d participants", n)
		}
		return nil
	})
	for _, x := range []struct {
		r  *resumer
		id string
	}{{pub, pubID}, {sub, subID}} {
		j, url := x.r.Session()
		if j.Participant.ID != x.id || !j.Resumed || url != b.ws {
			t.Fatalf("after the migration: participant %q (resumed %v) on %s, want %q on %s", j.Participant.ID, j.Resumed, url, x.id, b.ws)
		}
	}
	// Media flows on the new node to the moved subscriber and to the viewer that stayed.
	subBefore, viewBefore := sub.counter(pid).Load(), viewer.received(pid)
	checkFor(t, 15*time.Second, func() error {
		if sub.counter(pid).Load() < subBefore+20 || viewer.received(pid) < viewBefore+20 {
			return fmt.Errorf("media after the migration: sub +%d, viewer +%d", sub.counter(pid).Load()-subBefore, viewer.received(pid)-viewBefore)
		}
		return nil
	})
	if viewer.hasNote("participantLeft", pubID) || viewer.hasNote("participantLeft", subID) ||
		viewer.hasNote("participantJoined", `"epoch"`) {
		t.Fatal("the viewer saw a leave or a second join for a session that moved")
	}
	// The publisher's producer moved: no producerRemoved, no second producerAdded (the session
	// on the draining node, fenced by the resume, must not remove it when its WebSocket ends).
	viewer.mu.Lock()
	added := 0
	for _, n := range viewer.notes {
		if n.method == "producerAdded" && strings.Contains(string(n.data), pid) {
			added++
		}
	}
	viewer.mu.Unlock()
	if viewer.hasNote("producerRemoved", pid) || added != 1 {
		t.Fatalf("the viewer saw producerRemoved (%v) or %d producerAdded for the moved producer", viewer.hasNote("producerRemoved", pid), added)
	}
	checkFor(t, 10*time.Second, func() error {
		if m := a.srv.Migrations(); m.Told != 2 || m.Moved != 2 {
			return fmt.Errorf("migrations %+v", m)
		}
		return nil
	})
}
