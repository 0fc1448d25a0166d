package signal

import (
	"fmt"
	"testing"
)

// TestSlowClientQueueBound: a session with outQueue messages waiting closes as a slow client
// at the next one, and keeps the waiting ones in order; its queue is a slice that grows with
// use, not a channel of outQueue slots per session.
func TestSlowClientQueueBound(t *testing.T) {
	s := newSession(NewServer(nil, Options{}), nil) // never run: nothing writes the queue
	for i := 0; i < outQueue; i++ {
		s.post(i)
		if s.isClosing() {
			t.Fatalf("closed after %d messages, want %d queued", i+1, outQueue)
		}
	}
	s.post("one too many")
	if !s.isClosing() || s.closeCode != closeSlowClient || s.closeFlush {
		t.Fatalf("after %d messages: closing %v, code %d, flush %v; want closed as a slow client without a flush",
			outQueue+1, s.isClosing(), s.closeCode, s.closeFlush)
	}
	q := s.queued()
	if len(q) != outQueue {
		t.Fatalf("%d messages queued, want %d", len(q), outQueue)
	}
	for i, b := range q {
		if string(b) != fmt.Sprint(i) {
			t.Fatalf("message %d is %s", i, b)
		}
	}
}
