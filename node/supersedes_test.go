package node

import "testing"

func TestSupersedes(t *testing.T) {
	old := ParticipantInfo{ID: "PAZZZ", Identity: "alice", JoinedAt: 1000}
	newer := ParticipantInfo{ID: "PAAAA", Identity: "alice", JoinedAt: 2000}
	for _, c := range []struct {
		name         string
		a            ParticipantInfo
		aKnew        []string
		b            ParticipantInfo
		bKnew        []string
		want, wantBA bool
	}{
		{"a knew b", newer, []string{old.ID}, old, nil, true, false},
		{"b knew a, though a joined later by the clocks", newer, nil, old, []string{newer.ID}, false, true},
		{"neither knew: the later join", newer, nil, old, nil, true, false},
		{"neither knew, same millisecond: the greater id", ParticipantInfo{ID: "PAB", JoinedAt: 5}, nil, ParticipantInfo{ID: "PAA", JoinedAt: 5}, nil, true, false},
	} {
		if got := Supersedes(c.a, c.aKnew, c.b, c.bKnew); got != c.want {
			t.Errorf("%s: a supersedes b = %v", c.name, got)
		}
		// Both nodes decide alike: the other node asks the question the other way round.
		if got := Supersedes(c.b, c.bKnew, c.a, c.aKnew); got != c.wantBA {
			t.Errorf("%s: b supersedes a = %v", c.name, got)
		}
	}
}
