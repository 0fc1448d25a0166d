package signal_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// notes counts a peer's notifications of method whose data contains s.
func (p *peer) notesOf(method, s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, x := range p.notes {
		if x.method == method && strings.Contains(string(x.data), s) {
			n++
		}
	}
	return n
}

// dataOf counts the data messages a peer received that start with prefix.
func (p *peer) dataOf(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, d := range p.data {
		if strings.HasPrefix(string(d), prefix) {
			n++
		}
	}
	return n
}

// keepsMedia waits for more packets of producer id at p.
func keepsMedia(t *testing.T, p *peer, id string) {
	t.Helper()
	before := p.received(id)
	checkFor(t, 5*time.Second, func() error {
		if p.received(id) < before+20 {
			return fmt.Errorf("media stalled at %d packets", p.received(id))
		}
		return nil
	})
}

// counter sums a counter of the registry, over the series whose labels include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == k && l.GetValue() == v
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestChatFloodFailsAtSender: a client that floods chat gets rate_limited for the excess and,
// as it goes on, its connection closed with 4029; the room's other participants get no more than
// the sender's allowance, stay connected and keep their media, and chat among them works.
func TestChatFloodFailsAtSender(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub, res := publishVideo(t, e, "r", "pub", true)
	id := res.Producers[0].ID
	b, c := e.join("r", "b", false, true), e.join("r", "c", false, true)
	waitPackets(t, b, id)
	waitPackets(t, c, id)

	flooder := e.raw()
	flooder.expectOK(joinFrame(e.token("r", "flooder", true, false)))
	var limited, passed atomic.Int64
	closed := make(chan websocket.StatusCode, 1)
	go func() { // read every answer until the node closes the connection
		for {
			_, msg, err := flooder.c.Read(context.Background())
			if err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
			switch s := string(msg); {
			case strings.Contains(s, `"code":"`+proto.CodeRateLimited+`"`):
				limited.Add(1)
			case strings.Contains(s, `"ok":true`):
				passed.Add(1)
			}
		}
	}()
	start := time.Now()
	for i := 0; time.Since(start) < 15*time.Second; i++ {
		frame := fmt.Sprintf(`{"id":%d,"method":"message","data":{"data":{"text":"flood %d"}}}`, i+2, i)
		if flooder.c.Write(context.Background(), websocket.MessageText, []byte(frame)) != nil {
			break // closed
		}
		// 100/s, ten times the chat allowance; slow enough that the flooder reads its answers
		// in time even on a loaded machine (else it is closed as a slow client, 4002).
		time.Sleep(10 * time.Millisecond)
	}
	var code websocket.StatusCode
	select {
	case code = <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the flooder was never closed")
	}
	elapsed := time.Since(start)
	if code != 4029 || limited.Load() == 0 {
		t.Fatalf("flooder: close %d after %d refusals, want 4029", code, limited.Load())
	}
	allowed := node.DefaultChatBurst + int(elapsed.Seconds()*node.DefaultChatRate) + 1
	time.Sleep(200 * time.Millisecond) // what was let through has arrived
	got := b.notesOf("message", "flood")
	t.Logf("flood of %v: %d chat messages passed, %d refused; a receiver got %d (allowance %d)", elapsed.Round(time.Millisecond),
		passed.Load(), limited.Load(), got, allowed)
	if got == 0 || got > allowed {
		t.Fatalf("a receiver got %d flood messages, want 1..%d", got, allowed)
	}
	stillConnected(t, pub, b, c)
	keepsMedia(t, b, id)
	keepsMedia(t, c, id)
	if err := pub.SendMessage(context.Background(), map[string]string{"text": "after the flood"}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if b.notesOf("message", "after the flood") == 0 || c.notesOf("message", "after the flood") == 0 {
			return fmt.Errorf("chat after the flood not delivered")
		}
		return nil
	})
	if n := counter(t, e.reg, "cascade_messages_rate_limited_total", map[string]string{"kind": "chat"}); n == 0 {
		t.Fatal("no refused chat counted")
	}
}

// TestDataFloodFailsAtSender: a data-channel flood is cut to the sender's allowance at the
// node: receivers get no more than that, stay connected and keep their media.
func TestDataFloodFailsAtSender(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub, res := publishVideo(t, e, "r", "pub", true) // its send transport has the data channel
	id := res.Producers[0].ID
	b := e.join("r", "b", false, true)
	waitPackets(t, b, id)
	checkFor(t, 10*time.Second, func() error {
		if !pub.DataOpen() {
			return fmt.Errorf("data channel not open")
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error { // b's data consumer is open too
		if err := pub.SendData([]byte("hello")); err != nil {
			return err
		}
		if b.dataOf("hello") == 0 {
			return fmt.Errorf("no data at b yet")
		}
		return nil
	})
	start := time.Now()
	payload := strings.Repeat("x", 100)
	for i := 0; i < 3000; i++ {
		if err := pub.SendData([]byte("flood " + payload)); err != nil {
			t.Fatal(err)
		}
		if i%300 == 299 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	checkFor(t, 10*time.Second, func() error { // every message has reached the node
		if n := counter(t, e.reg, "cascade_messages_rate_limited_total", map[string]string{"kind": "data"}); n+float64(b.dataOf("flood")) < 3000 {
			return fmt.Errorf("%v refused + %d delivered of 3000", n, b.dataOf("flood"))
		}
		return nil
	})
	elapsed := time.Since(start)
	allowed := node.DefaultDataBurst + int(elapsed.Seconds()*node.DefaultDataRate) + 1
	got := b.dataOf("flood")
	t.Logf("data flood over %v: a receiver got %d of 3000 (allowance %d)", elapsed.Round(time.Millisecond), got, allowed)
	if got == 0 || got > allowed {
		t.Fatalf("a receiver got %d flood messages, want 1..%d", got, allowed)
	}
	stillConnected(t, pub, b)
	keepsMedia(t, b, id)
}

// TestChatAndDataNeedPublishGrant: a participant without the publish grant cannot chat
// (forbidden) nor offer a data channel (forbidden); it still receives chat and data, and stays.
func TestChatAndDataNeedPublishGrant(t *testing.T) {
	e := newEnv(t, 1, 100)
	pub, res := publishVideo(t, e, "r", "pub", true)
	viewer := e.join("r", "viewer", false, true)
	waitPackets(t, viewer, producerIDs(res)...)
	if err := viewer.SendMessage(context.Background(), map[string]string{"text": "may I?"}); codeOf(err) != proto.CodeForbidden {
		t.Fatalf("chat without the publish grant: %v, want %s", err, proto.CodeForbidden)
	}
	if _, err := viewer.Publish(context.Background()); codeOf(err) != proto.CodeForbidden {
		t.Fatalf("a data-only offer without the publish grant: %v, want %s", err, proto.CodeForbidden)
	}
	if err := pub.SendMessage(context.Background(), map[string]string{"text": "to all"}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		if viewer.notesOf("message", "to all") == 0 {
			return fmt.Errorf("chat not delivered to the viewer")
		}
		if !pub.DataOpen() {
			return fmt.Errorf("data channel not open")
		}
		if err := pub.SendData([]byte("data to all")); err != nil {
			return err
		}
		if viewer.dataOf("data to all") == 0 {
			return fmt.Errorf("data not delivered to the viewer")
		}
		return nil
	})
	if pub.notesOf("message", "may I?") != 0 {
		t.Fatal("the refused chat reached the room")
	}
	stillConnected(t, pub, viewer)
	keepsMedia(t, viewer, res.Producers[0].ID)
}
