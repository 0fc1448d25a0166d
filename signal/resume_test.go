package signal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// joinAnswer sends a join frame with data on r and returns its decoded answer.
func (r *rawConn) joinAnswer(data string) (proto.JoinResult, *proto.Error) {
	r.t.Helper()
	r.send(`{"id":1,"method":"join","data":` + data + `}`)
	got, err := r.next()
	if err != nil {
		r.t.Fatalf("join: %v", err)
	}
	var resp struct {
		OK    bool             `json:"ok"`
		Data  proto.JoinResult `json:"data"`
		Error *proto.Error     `json:"error"`
	}
	if err := json.Unmarshal([]byte(got), &resp); err != nil {
		r.t.Fatalf("join answer %s: %v", got, err)
	}
	return resp.Data, resp.Error
}

func resumeData(tok string) string { return fmt.Sprintf(`{"resume":%q}`, tok) }

// TestResumeSameNode: a client whose WebSocket drops without a leave resumes its session on
// the same node with its credential: same participant id, the next epoch, a fresh credential;
// the other participant hears no leave and no join. The credential then is used: a second
// resume with it is refused, as are an expired credential, a forged one and an access token.
// Ping works before and after the join.
func TestResumeSameNode(t *testing.T) {
	e := newEnv(t, 1, 100)
	obs := e.join("r", "obs", false, true)

	first := e.raw()
	first.pingOK() // before the join
	ans, perr := first.joinAnswer(fmt.Sprintf(`{"token":%q}`, e.token("r", "alice", true, true)))
	if perr != nil {
		t.Fatalf("join: %v", perr)
	}
	if ans.Resume == nil || ans.Resume.Token == "" || ans.Resumed || ans.Nodes != nil {
		t.Fatalf("fresh join answer: resume %+v, resumed %v, nodes %v", ans.Resume, ans.Resumed, ans.Nodes)
	}
	if d := time.Until(time.UnixMilli(ans.Resume.Expires)); d < (proto.ResumeTTLSeconds-10)*time.Second || d > proto.ResumeTTLSeconds*time.Second {
		t.Fatalf("credential expires in %v", d)
	}
	id := ans.Participant.ID
	first.pingOK()
	checkFor(t, 5*time.Second, func() error {
		if !obs.hasNote("participantJoined", id) {
			return fmt.Errorf("observer not told of the join")
		}
		return nil
	})

	_ = first.c.CloseNow() // the socket drops: no leave, no close frame
	time.Sleep(100 * time.Millisecond)
	second := e.raw()
	second.pingOK()
	res, perr := second.joinAnswer(resumeData(ans.Resume.Token))
	if perr != nil {
		t.Fatalf("resume: %v", perr)
	}
	if !res.Resumed || res.Participant.ID != id || res.Participant.Epoch != 1 || res.Resume == nil || res.Resume.Token == ans.Resume.Token {
		t.Fatalf("resume answer: %+v", res)
	}
	second.pingOK()
	// A publish naming a producer the session never had is refused.
	second.expect(`{"id":3,"method":"publish","data":{"sdp":"v=0\r\n","producerIds":{"0":"PRNOTMINE"}}}`, proto.CodeBadRequest)
	// A message from the resumed session reaches the observer after anything the resume made
	// the node tell it.
	second.send(`{"id":2,"method":"message","data":{"data":"after-resume"}}`)
	checkFor(t, 5*time.Second, func() error {
		if !obs.hasNote("message", "after-resume") {
			return fmt.Errorf("message not seen")
		}
		return nil
	})
	if obs.hasNote("participantLeft", id) || obs.notesOf("participantJoined", id) != 1 {
		t.Fatalf("the observer heard of the resume: %v", obs.notesAbout(id))
	}

	// The first credential again: refused, the session goes on.
	third := e.raw()
	if _, perr := third.joinAnswer(resumeData(ans.Resume.Token)); perr == nil || perr.Code != proto.CodeResumeRefused || !strings.Contains(perr.Message, "used") {
		t.Fatalf("second use of a credential: %+v", perr)
	}
	expired, _, err := testKeys.MintResume(auth.Resume{Room: "r", Identity: "alice", Participant: id, Epoch: 1, Node: e.node.ID()}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := auth.Keys{Key: testKeys.Key, Secret: "another-secret-of-32-characters!"}.MintResume(
		auth.Resume{Room: "r", Identity: "alice", Participant: id, Epoch: 1, Node: e.node.ID()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, tok, says string }{
		{"expired", expired, "expired"},
		{"forged", forged, "not valid"},
		{"an access token", e.token("r", "alice", true, true), "not valid"},
	} {
		if _, perr := e.raw().joinAnswer(resumeData(c.tok)); perr == nil || perr.Code != proto.CodeResumeRefused || !strings.Contains(perr.Message, c.says) {
			t.Errorf("%s credential: %+v", c.name, perr)
		}
	}
	if ps := e.node.Room("r").Participants(); len(ps) != 2 {
		t.Fatalf("participants %v, want obs and alice", ps)
	}
	second.pingOK()
}

// TestResumeTokenRefresh: a publish is followed by a fresh credential that names the new
// producer, an unpublish by one that does not.
func TestResumeTokenRefresh(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub := e.join("r", "pub", true, false)
	if pub.Join.Resume == nil {
		t.Fatal("no credential in the join answer")
	}
	res, err := pub.Publish(context.Background(), newSource(t, webrtc.MimeTypeVP8, "v", "s").track)
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		for _, n := range pub.notes {
			if n.method != proto.MethodResumeToken {
				continue
			}
			var tok proto.ResumeToken
			if err := json.Unmarshal(n.data, &tok); err != nil {
				return err
			}
			c, err := testKeys.VerifyResume(tok.Token)
			if err != nil {
				return err
			}
			if len(c.Producers) == 1 && c.Producers[0].ID == res.Producers[0].ID && c.Participant == pub.Join.Participant.ID {
				return nil
			}
		}
		return fmt.Errorf("no credential naming producer %s", res.Producers[0].ID)
	})
	// Unpublished, the producer leaves the session's next credential.
	if err := pub.Request(context.Background(), proto.MethodUnpublish, proto.ProducerData{Producer: res.Producers[0].ID}, nil); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		for i := len(pub.notes) - 1; i >= 0; i-- {
			if pub.notes[i].method != proto.MethodResumeToken {
				continue
			}
			var tok proto.ResumeToken
			if err := json.Unmarshal(pub.notes[i].data, &tok); err != nil {
				return err
			}
			c, err := testKeys.VerifyResume(tok.Token)
			if err != nil {
				return err
			}
			if len(c.Producers) != 0 {
				return fmt.Errorf("the last credential names %+v", c.Producers)
			}
			return nil
		}
		return fmt.Errorf("no credential")
	})
}

// TestJoinAnswerNodes: in a cluster, the join answer lists the other node, by signaling URL.
func TestJoinAnswerNodes(t *testing.T) {
	envs := newCluster(t, 2, 3)
	checkFor(t, 10*time.Second, func() error {
		if len(envs[0].cluster.Peers()) != 1 {
			return fmt.Errorf("cluster not formed")
		}
		return nil
	})
	ans, perr := envs[0].raw().joinAnswer(fmt.Sprintf(`{"token":%q,"noRedirect":true}`, envs[0].token("r", "a", false, true)))
	if perr != nil {
		t.Fatal(perr)
	}
	want := envs[1].ws
	if len(ans.Nodes) != 1 || ans.Nodes[0].ID != envs[1].node.ID() || ans.Nodes[0].URL != want || ans.Resume == nil {
		t.Fatalf("nodes %+v, want %s at %s", ans.Nodes, envs[1].node.ID(), want)
	}
}

// pingOK sends a ping and fails the test unless it is answered ok.
func (r *rawConn) pingOK() {
	r.t.Helper()
	r.send(`{"id":7,"method":"ping","data":{}}`)
	got, err := r.next()
	if err != nil || !strings.Contains(got, `"ok":true`) {
		r.t.Fatalf("ping: %s %v", got, err)
	}
}

func (p *peer) notesAbout(contains string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, n := range p.notes {
		if strings.Contains(string(n.data), contains) {
			out = append(out, n.method+" "+string(n.data))
		}
	}
	return out
}

// TestClusterResumeElsewhere: a subscriber's node dies without a goodbye and the subscriber
// resumes its session on the other node, which also serves the publisher: same participant id,
// the next epoch, its media again, and the participants there hear no leave and no join, while
// a participant of the dead node that does not resume leaves once the grace is over.
func TestClusterResumeElsewhere(t *testing.T) {
	envs := newCluster(t, 2, 3)
	checkFor(t, 10*time.Second, func() error {
		if len(envs[0].cluster.Peers()) != 1 || len(envs[1].cluster.Peers()) != 1 {
			return fmt.Errorf("cluster not formed")
		}
		return nil
	})
	_, pres := publishVideo(t, envs[0], "r", "pub", false)
	obs := envs[0].join("r", "obs", false, true)
	waitPackets(t, obs, pres.Producers[0].ID) // the producer is live

	sub := envs[1].raw()
	ans, perr := sub.joinAnswer(fmt.Sprintf(`{"token":%q,"noRedirect":true}`, envs[1].token("r", "sub", false, true)))
	if perr != nil {
		t.Fatal(perr)
	}
	if len(ans.Nodes) != 1 || ans.Nodes[0].ID != envs[0].node.ID() || ans.Resume == nil {
		t.Fatalf("join answer on n1: nodes %+v, resume %+v", ans.Nodes, ans.Resume)
	}
	stay := envs[1].raw() // on the dead node, and never resumed
	stayAns, perr := stay.joinAnswer(fmt.Sprintf(`{"token":%q,"noRedirect":true}`, envs[1].token("r", "stay", false, true)))
	if perr != nil {
		t.Fatal(perr)
	}
	id := ans.Participant.ID
	checkFor(t, 10*time.Second, func() error {
		if !obs.hasNote("participantJoined", id) || !obs.hasNote("participantJoined", stayAns.Participant.ID) {
			return fmt.Errorf("observer not told of the joins on n1")
		}
		return nil
	})

	// n1 dies: out of the cluster first, so that its sessions' ends reach no one.
	envs[1].leave()
	envs[1].srv.Close()
	envs[1].node.Close()

	again := envs[0].raw()
	res, perr := again.joinAnswer(resumeData(ans.Resume.Token))
	if perr != nil {
		t.Fatalf("resume on n0: %v", perr)
	}
	if !res.Resumed || res.Participant.ID != id || res.Participant.Epoch != 1 || res.Redirect != nil {
		t.Fatalf("resume answer: %+v", res)
	}
	if len(res.Producers) != 1 || res.Producers[0].ID != pres.Producers[0].ID {
		t.Fatalf("resumed session sees producers %+v", res.Producers)
	}
	// Auto-subscribe consumes the publisher's track for it again (the observer has the other
	// consumer on n0).
	checkFor(t, 5*time.Second, func() error {
		if c := envs[0].node.Stats().Consumers; c != 2 {
			return fmt.Errorf("%d consumers on n0, want 2", c)
		}
		return nil
	})
	// Once the grace is over, the participant that did not resume leaves; the one that did
	// never did, nor joined again.
	checkFor(t, cluster.DefaultResumeGrace+15*time.Second, func() error {
		if !obs.hasNote("participantLeft", stayAns.Participant.ID) {
			return fmt.Errorf("the participant of the dead node has not left")
		}
		return nil
	})
	if obs.hasNote("participantLeft", id) || obs.notesOf("participantJoined", id) != 1 {
		t.Fatalf("the observer heard of the resume: %v", obs.notesAbout(id))
	}
	if !hasParticipant(envs[0].node.Room("r").Participants(), id, 1) {
		t.Fatalf("n0's room lacks the resumed session: %v", envs[0].node.Room("r").Participants())
	}
}

func hasParticipant(ps []node.ParticipantInfo, id string, epoch uint64) bool {
	for _, p := range ps {
		if p.ID == id && p.Epoch == epoch {
			return true
		}
	}
	return false
}

// TestResumedSessionClosed: a session still connected when its client resumes it on another
// connection (a migration, a node that was cut off) is told closed "resumed" and closed with
// 4005; the resumed session goes on, and once it left its credential is refused.
func TestResumedSessionClosed(t *testing.T) {
	e := newEnv(t, 1, 100)
	old := e.raw()
	ans, perr := old.joinAnswer(fmt.Sprintf(`{"token":%q,"autoSubscribe":false}`, e.token("r", "alice", true, true)))
	if perr != nil {
		t.Fatal(perr)
	}
	now := e.raw()
	res, perr := now.joinAnswer(resumeData(ans.Resume.Token))
	if perr != nil {
		t.Fatal(perr)
	}
	old.closedThenCode(proto.ReasonResumed, proto.CloseResumed)
	now.pingOK()
	if ps := e.node.Room("r").Participants(); len(ps) != 1 || ps[0].ID != ans.Participant.ID || ps[0].Epoch != 1 {
		t.Fatalf("participants %v", ps)
	}
	// Once the session left, its newest credential resumes nothing.
	now.expectOK(`{"id":4,"method":"leave","data":{}}`)
	now.drain() // the close handshake: the session ends once the client answers it
	checkFor(t, 5*time.Second, func() error {
		if r := e.node.Room("r"); r != nil && len(r.Participants()) != 0 {
			return fmt.Errorf("participants %v", r.Participants())
		}
		return nil
	})
	if _, perr := e.raw().joinAnswer(resumeData(res.Resume.Token)); perr == nil || perr.Code != proto.CodeResumeRefused || !strings.Contains(perr.Message, "ended") {
		t.Fatalf("resume after leave: %+v", perr)
	}
}

// drain reads r until its connection ends (at most 5 s).
func (r *rawConn) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := r.c.Read(ctx); err != nil {
			return
		}
	}
}
