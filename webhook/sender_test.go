package webhook_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sfu/cascade/webhook"
)

func newSender(t *testing.T, o webhook.Options) *webhook.Sender {
	t.Helper()
	if o.Key == nil {
		key, err := webhook.ParseKey(testKey)
		if err != nil {
			t.Fatal(err)
		}
		o.Key = key
	}
	s, err := webhook.NewSender(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// numbered is n events named participant_joined for room "r", their participant ids p0...
func numbered(n int) []webhook.Event {
	var out []webhook.Event
	for i := range n {
		ev := webhook.NewEvent(webhook.ParticipantJoined, "n1", nil, time.Now())
		ev.Room.Name = "r"
		ev.Participant = &webhook.Participant{ID: fmt.Sprintf("p%d", i), Identity: "i"}
		out = append(out, ev)
	}
	return out
}

// sameIDs tells whether got are the events sent, in order.
func sameIDs(got, sent []webhook.Event) error {
	if len(got) != len(sent) {
		return fmt.Errorf("%d events accepted, want %d", len(got), len(sent))
	}
	for i := range sent {
		if got[i].ID != sent[i].ID || got[i].Participant.ID != sent[i].Participant.ID {
			return fmt.Errorf("event %d: got %s (%s), want %s (%s)", i, got[i].ID, got[i].Participant.ID, sent[i].ID, sent[i].Participant.ID)
		}
	}
	return nil
}

// TestParseKey: the Standard Webhooks form (with or without padding) decodes; another string is
// the key itself; short keys and bad base64 are refused.
func TestParseKey(t *testing.T) {
	k, err := webhook.ParseKey(testKey)
	if err != nil || string(k) != string(testKeyBytes) {
		t.Fatalf("whsec key: %x %v", k, err)
	}
	if k, err := webhook.ParseKey("whsec_MDEyMzQ1Njc4OWFiY2RlZg"); err != nil || string(k) != "0123456789abcdef" {
		t.Fatalf("unpadded whsec key: %q %v", k, err)
	}
	if k, err := webhook.ParseKey("a-plain-secret-of-32-bytes-long!"); err != nil || string(k) != "a-plain-secret-of-32-bytes-long!" {
		t.Fatalf("plain key: %q %v", k, err)
	}
	for _, bad := range []string{"", "short", "whsec_c2hvcnQ=", "whsec_not base64!!!!!!!!!!!!!!"} {
		if _, err := webhook.ParseKey(bad); !errors.Is(err, webhook.ErrKey) {
			t.Errorf("ParseKey(%q): %v, want ErrKey", bad, err)
		}
	}
}

// TestSenderSignsAndOrders: every call to a real receiver passes its own signature check, and
// the events arrive once each, in the order sent, with their ids; to each of two URLs.
func TestSenderSignsAndOrders(t *testing.T) {
	r1, r2 := newReceiver(t, nil), newReceiver(t, nil)
	s := newSender(t, webhook.Options{URLs: []string{r1.srv.URL, r2.srv.URL}})
	sent := numbered(50)
	for _, ev := range sent {
		s.Send(ev)
	}
	for _, r := range []*receiver{r1, r2} {
		checkFor(t, 10*time.Second, func() error { return sameIDs(r.events(), sent) })
		r.noneRefused()
	}
	statsFor(t, s, func(st webhook.Stats) bool {
		return st.OK == 100 && st.Retry == 0 && st.Events[webhook.ParticipantJoined] == 50
	})
}

// TestSenderRetriesUntilBack: a receiver that answers 503 for its first 8 calls, then one whose
// connections fail, gets every event once it is back, in order, each with the id it had on
// its first attempt; the retries are counted.
func TestSenderRetriesUntilBack(t *testing.T) {
	r := newReceiver(t, func(n int) int {
		if n < 8 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := newSender(t, webhook.Options{URLs: []string{r.srv.URL}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	sent := numbered(5)
	for _, ev := range sent {
		s.Send(ev)
	}
	checkFor(t, 10*time.Second, func() error { return sameIDs(r.events(), sent) })
	r.noneRefused()
	for i, c := range r.allCalls()[:9] {
		if c.id != sent[0].ID {
			t.Fatalf("attempt %d carried id %s, want the first event's %s", i, c.id, sent[0].ID)
		}
	}
	statsFor(t, s, func(st webhook.Stats) bool { return st.Retry == 8 && st.OK == 5 && st.Expired == 0 })

	// Down: nothing listens at the URL for a while, then a receiver comes back there.
	down := newReceiver(t, nil)
	url := down.srv.URL
	down.srv.Close()
	s2 := newSender(t, webhook.Options{URLs: []string{url}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	sent = numbered(3)
	for _, ev := range sent {
		s2.Send(ev)
	}
	checkFor(t, 5*time.Second, func() error {
		if st := s2.Stats(); st.Retry < 3 {
			return fmt.Errorf("%d retries", st.Retry)
		}
		return nil
	})
	back := newReceiver(t, nil)
	back.srv.Close()
	back.srv = httptestServerAt(t, strings.TrimPrefix(url, "http://"), back)
	checkFor(t, 10*time.Second, func() error { return sameIDs(back.events(), sent) })
	back.noneRefused()
}

// TestSenderWindowEnds: a receiver that never takes an event: past the retry window the event
// is given up and counted (failed attempt, expired event), and the next one is tried.
func TestSenderWindowEnds(t *testing.T) {
	r := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	s := newSender(t, webhook.Options{URLs: []string{r.srv.URL}, RetryWindow: 200 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	s.Send(numbered(1)[0])
	checkFor(t, 5*time.Second, func() error {
		if st := s.Stats(); st.Expired != 1 || st.Failed != 1 || st.Retry == 0 || st.Queued != 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	calls := len(r.allCalls())
	late := numbered(1)[0]
	late.CreatedAt = time.Now().Add(-time.Second).UnixMilli() // its window is over already
	s.Send(late)
	checkFor(t, 5*time.Second, func() error {
		if st := s.Stats(); st.Expired != 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if n := len(r.allCalls()); n != calls {
		t.Fatalf("an event past its window was sent (%d calls, then %d)", calls, n)
	}
}

// TestSenderQueueOverflow: while the receiver holds the first call, Send still returns at once;
// past the queue's size events are dropped and counted, the rest arrive once it answers; the
// metrics show it.
func TestSenderQueueOverflow(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	r := newReceiver(t, nil)
	inner := r.srv.Config.Handler
	r.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case held <- struct{}{}:
			<-release // the first call only
		default:
		}
		inner.ServeHTTP(w, req)
	})
	s := newSender(t, webhook.Options{URLs: []string{r.srv.URL}, Queue: 5})
	sent := numbered(20)
	s.Send(sent[0])
	<-held // the first event is out of the queue, its call held
	for _, ev := range sent[1:] {
		s.Send(ev)
	}
	st := s.Stats()
	if st.QueueFull != 14 || st.Queued != 5 {
		t.Fatalf("stats %+v: want 14 dropped, 5 queued", st)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(webhook.NewCollector(s))
	got := gather(t, reg)
	for series, want := range map[string]float64{
		`cascade_webhook_dropped_total{reason="queue_full"}`: 14, `cascade_webhook_dropped_total{reason="expired"}`: 0,
		`cascade_webhook_queue_length`: 5, `cascade_webhook_events_total{event="participant_joined"}`: 20,
		`cascade_webhook_events_total{event="room_started"}`: 0,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	close(release)
	checkFor(t, 10*time.Second, func() error { return sameIDs(r.events(), sent[:6]) })
	checkFor(t, 5*time.Second, func() error {
		if got := gather(t, reg)[`cascade_webhook_deliveries_total{result="ok"}`]; got != 6 {
			return fmt.Errorf("%v deliveries ok, want 6", got)
		}
		return nil
	})
}

// TestSenderCloseDrains: Close delivers what is queued before it returns; Send after Close
// does nothing.
func TestSenderCloseDrains(t *testing.T) {
	r := newReceiver(t, nil)
	key, _ := webhook.ParseKey(testKey)
	s, err := webhook.NewSender(webhook.Options{URLs: []string{r.srv.URL}, Key: key, Drain: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sent := numbered(20)
	for _, ev := range sent {
		s.Send(ev)
	}
	s.Close()
	if err := sameIDs(r.events(), sent); err != nil {
		t.Fatal(err)
	}
	s.Send(numbered(1)[0])
	if st := s.Stats(); st.Queued != 0 || st.Events[webhook.ParticipantJoined] != 20 {
		t.Fatalf("stats after close %+v", st)
	}
	if _, err := webhook.NewSender(webhook.Options{URLs: []string{r.srv.URL}, Key: []byte("short")}); !errors.Is(err, webhook.ErrKey) {
		t.Fatalf("a short key: %v", err)
	}
}

// TestSenderCloseStopsRetrying: Close does not wait out a receiver that is down: after the
// drain the event is dropped and counted.
func TestSenderCloseStopsRetrying(t *testing.T) {
	r := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	key, _ := webhook.ParseKey(testKey)
	s, err := webhook.NewSender(webhook.Options{URLs: []string{r.srv.URL}, Key: key, Drain: 100 * time.Millisecond, MinBackoff: time.Hour, RetryWindow: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.Send(numbered(1)[0])
	checkFor(t, 5*time.Second, func() error {
		if len(r.allCalls()) == 0 {
			return errors.New("no call yet")
		}
		return nil
	})
	s.Close() // returns after the drain, not after the hour of backoff
	if st := s.Stats(); st.Shutdown != 1 || st.OK != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// gather reads reg's series: name{label="value"} -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			v := m.GetCounter().GetValue()
			if m.Gauge != nil {
				v = m.GetGauge().GetValue()
			}
			out[name] = v
		}
	}
	return out
}

// statsFor waits for s's counters to satisfy ok: a receiver records an event before its answer
// reaches the sender, so the counters may lag the events a receiver holds.
func statsFor(t *testing.T, s *webhook.Sender, ok func(webhook.Stats) bool) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		if st := s.Stats(); !ok(st) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}
