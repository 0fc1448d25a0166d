package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
)

// dialPinging dials url with o, pinging every interval; the client is closed with the test.
func dialPinging(t *testing.T, ctx context.Context, url string, o client.Options, every time.Duration) *client.Client {
	t.Helper()
	client.SetPingInterval(&o, every)
	c, err := client.Dial(ctx, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A node that stops answering, its TCP connection open (no reset, no close), is found gone
// by the ping deadline and the session resumes; a live one never is: the pings keep it alive
// past many deadlines.
func TestSilentNodeIsLost(t *testing.T) {
	n, px := frozenNode(t)
	got := make(chan client.Resume, 4)
	o := client.Options{Token: n.Token("live", "alice"), LoopbackOnly: true, Resume: true, OnResume: func(r client.Resume) { got <- r }}
	const every = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialPinging(t, ctx, px.url(), o, every)

	// Alive: ten deadlines (three intervals each) pass without a false alarm.
	select {
	case <-c.Done():
		t.Fatalf("a live node was taken for gone: %v", c.Err())
	case <-time.After(30 * every):
	}
	if a := px.accepted.Load(); a != 1 {
		t.Fatalf("connections to the node: %d, want 1 (no resume while it lives)", a)
	}

	px.freeze()
	frozen := time.Now()
	// The session resumes through the proxy, whose new connections flow: on one node without
	// the cluster's resume, the credential is refused and the client joins afresh.
	var r client.Resume
	select {
	case r = <-got:
	case <-c.Done():
		t.Fatalf("the session ended instead of resuming: %v", c.Err())
	case <-ctx.Done():
		t.Fatal("the silent node was never found gone")
	}
	if !errors.Is(r.Err, client.ErrNodeSilent) {
		t.Fatalf("resume after %v, want the ping deadline", r.Err)
	}
	if r.LostAt.Before(frozen) || r.ResumedAt.Before(r.LostAt) || r.Attempts < 1 {
		t.Fatalf("resume %+v: times out of order", r)
	}
	joined, _ := c.Session()
	if !r.Fresh && joined.Participant.ID != c.Join.Participant.ID {
		t.Fatalf("resumed as %s, was %s", joined.Participant.ID, c.Join.Participant.ID)
	}
	if err := c.SendMessage(ctx, "still here"); err != nil {
		t.Fatalf("the resumed session does not serve requests: %v", err)
	}
	if a := px.accepted.Load(); a != 2 {
		t.Fatalf("connections: %d, want 2", a)
	}
}

// A session the node closed (closed notification: here, replaced by a newer join of the same
// identity) is over: the client never resumes it, even with Resume on.
func TestClosedSessionNeverResumes(t *testing.T) {
	n, px := frozenNode(t)
	var resumes atomic.Int64
	o := client.Options{Token: n.Token("closed", "bob"), LoopbackOnly: true, Resume: true,
		OnResume: func(client.Resume) { resumes.Add(1) }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialPinging(t, ctx, px.url(), o, 50*time.Millisecond)
	again, err := client.Dial(ctx, n.URL, client.Options{Token: n.Token("closed", "bob"), LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the replaced session did not end")
	}
	var ce *client.CloseError
	if err := c.Err(); !errors.As(err, &ce) || !ce.Final() {
		t.Fatalf("Err = %v, want a final CloseError (replaced)", err)
	}
	time.Sleep(300 * time.Millisecond) // six ping intervals: a resume would have dialled by now
	if a := px.accepted.Load(); a != 1 || resumes.Load() != 0 {
		t.Fatalf("connections %d, resumes %d: want 1 and 0 (a closed session never resumes)", a, resumes.Load())
	}
}

// The resume backoff doubles from 200 ms, capped at 2 s, each wait within ±50 %.
func TestResumeBackoff(t *testing.T) {
	for n, base := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond,
		4: 1600 * time.Millisecond, 5: 2 * time.Second, 40: 2 * time.Second} {
		lo, hi := base, time.Duration(0)
		for range 200 {
			d := client.Backoff(n)
			if d < base/2 || d > base*3/2 {
				t.Fatalf("Backoff(%d) = %v, want %v ± 50 %%", n, d, base)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		if hi-lo < base/4 { // jitter: the waits of many clients spread
			t.Fatalf("Backoff(%d) spread %v..%v: no jitter", n, lo, hi)
		}
	}
}
