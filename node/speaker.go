package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Speakers: this node's list of the room's speakers (its own audio producers, ranked and
// debounced) changed; or it is the same but its levels moved enough to reorder the room's
// list; or it is not empty and was last sent speakerRefresh ago (so a node that opened the
// room since, or missed a message, learns it). The cluster layer sends it to the room's other
// nodes, which hand it to Room.SetRemoteSpeakers. Each node ranks the room's list from its own
// and the others' lists: the speakers of one node travel once per change, not per tick.
type Speakers struct {
	Room     *Room
	Speakers []proto.Speaker
}

func (Speakers) isEvent() {}

const (
	// speakerRefresh is how often a node repeats a list that is not empty.
	speakerRefresh = 2 * time.Second
	// remoteSpeakersTTL is how long another node's list counts without being repeated.
	remoteSpeakersTTL = 3 * speakerRefresh
)

// speakers is the node's speaker loop: one goroutine that, every speakerTick, reads the levels
// of its rooms' local audio producers, decides each room's local list, ranks it with the
// other nodes' lists into the room's list and tells the room's local participants when that
// changes. Nothing of it runs per packet.
type speakers struct {
	n    *Node
	stop chan struct{}
	wg   sync.WaitGroup

	rooms map[*Room]*roomSpeakers // owned by the loop

	mu     sync.Mutex
	remote map[*Room]map[string]remoteSpeakers // other nodes' lists, by room and node

	notified, changes atomic.Uint64
	notifiedDesc      *prometheus.Desc
	changesDesc       *prometheus.Desc
}

// remoteSpeakers is another node's list, as received.
type remoteSpeakers struct {
	list []proto.Speaker
	at   time.Time
}

// roomSpeakers is the loop's state of one room.
type roomSpeakers struct {
	voices  map[*Producer]*voiceOf  // the room's audio producers whose origin is here
	local   sentList                // this node's list, as sent to the other nodes
	shown   debounced               // the room's list, as told to the participants
	version uint64                  // counts the changes of shown
	told    map[*Participant]uint64 // the version each local participant last heard
}

// voiceOf is a local audio producer's voice and the source its level extension was read for.
type voiceOf struct {
	voice
	src     *source
	nextTry time.Time // when to look for the extension again (not negotiated yet, or never)
}

func newSpeakers(n *Node) *speakers {
	return &speakers{n: n, stop: make(chan struct{}), rooms: make(map[*Room]*roomSpeakers),
		remote: make(map[*Room]map[string]remoteSpeakers),
		notifiedDesc: prometheus.NewDesc("cascade_active_speakers_notifications_total",
			"activeSpeakers notifications sent to local participants.", nil, nil),
		changesDesc: prometheus.NewDesc("cascade_active_speakers_changes_total",
			"Changes of a room's active speakers seen by this node.", nil, nil),
	}
}

// startSpeakers starts the node's speaker loop and registers its metrics with reg (nil: none);
// a second call does nothing.
func (n *Node) startSpeakers(reg prometheus.Registerer) error {
	if n.speakers != nil {
		return nil
	}
	s := newSpeakers(n)
	if reg != nil {
		if err := reg.Register(s); err != nil {
			return fmt.Errorf("register speaker metrics: %w", err)
		}
	}
	n.speakers = s
	s.wg.Add(1)
	go s.run()
	return nil
}

// stopSpeakers stops the speaker loop, if it runs, and waits for it.
func (n *Node) stopSpeakers() {
	if n.speakers != nil {
		close(n.speakers.stop)
		n.speakers.wg.Wait()
	}
}

func (s *speakers) run() {
	defer s.wg.Done()
	everyTick(s.stop, speakerTick, s.tick)
}

// tick decides every room's lists.
func (s *speakers) tick(now time.Time) {
	rooms := s.n.Rooms()
	open := make(map[*Room]bool, len(rooms))
	for _, r := range rooms {
		open[r] = true
		s.room(r, now)
	}
	for r := range s.rooms {
		if !open[r] {
			delete(s.rooms, r)
		}
	}
	s.mu.Lock()
	for r := range s.remote {
		if !open[r] {
			delete(s.remote, r)
		}
	}
	s.mu.Unlock()
}

// room decides one room's lists and tells its participants.
func (s *speakers) room(r *Room, now time.Time) {
	st := s.rooms[r]
	if st == nil {
		st = &roomSpeakers{voices: make(map[*Producer]*voiceOf), told: make(map[*Participant]uint64)}
		s.rooms[r] = st
	}
	var spoken []proto.Speaker
	live := r.liveProducers()
	for _, pr := range live {
		if pr.kind != webrtc.RTPCodecTypeAudio {
			continue
		}
		v := st.voices[pr]
		src := pr.source()
		if src.origin != "" || src.participant == nil {
			if v != nil { // it moved away: its new origin measures it
				pr.level.ext.Store(0)
				delete(st.voices, pr)
			}
			continue
		}
		if v == nil {
			v = &voiceOf{}
			st.voices[pr] = v
		}
		if v.src != src && !now.Before(v.nextTry) {
			// Off the media path: the extension's id on the publisher's transport.
			id := audioLevelExt(src.pc, src.mid)
			pr.level.ext.Store(id)
			if id != 0 {
				v.src = src
			} else {
				v.nextTry = now.Add(time.Second)
			}
		}
		v.update(pr.level.take())
		if v.speaking && !pr.muted.Load() {
			spoken = append(spoken, proto.Speaker{Participant: pr.owner, Producer: pr.id, Level: roundLevel(v.level)})
		}
	}
	if len(st.voices) > 0 {
		for pr := range st.voices {
			if r.producer(pr.id) != pr {
				delete(st.voices, pr)
			}
		}
	}
	if st.local.send(rankSpeakers(st.local.list, spoken), now) {
		s.n.emit(Speakers{Room: r, Speakers: append([]proto.Speaker(nil), st.local.list...)})
	}
	all := append([]proto.Speaker(nil), st.local.list...)
	for origin, l := range s.remoteOf(r, now) {
		all = append(all, validSpeakers(r, origin, l)...)
	}
	if st.shown.propose(rankSpeakers(st.shown.list, all), now) {
		st.version++
		s.changes.Add(1)
	}
	s.tell(r, st)
}

// remoteOf is the other nodes' current lists of room r (expired ones are dropped).
func (s *speakers) remoteOf(r *Room, now time.Time) map[string][]proto.Speaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.remote[r]
	if len(m) == 0 {
		return nil
	}
	out := make(map[string][]proto.Speaker, len(m))
	for origin, l := range m {
		if now.Sub(l.at) > remoteSpeakersTTL {
			delete(m, origin)
			continue
		}
		out[origin] = l.list
	}
	return out
}

// validSpeakers keeps the entries of node origin's list that name an audio producer of the
// room whose origin is that node, with its real publisher: a node speaks only for its own
// producers, whatever its message says.
func validSpeakers(r *Room, origin string, l []proto.Speaker) []proto.Speaker {
	out := make([]proto.Speaker, 0, len(l))
	for _, sp := range l {
		pr := r.producer(sp.Producer)
		if pr == nil || pr.kind != webrtc.RTPCodecTypeAudio || pr.Origin() != origin {
			continue
		}
		sp.Participant = pr.owner
		out = append(out, sp)
	}
	return out
}

// tell sends the room's list to every local participant that has not heard this version: all
// of them after a change, and one that joined since (unless the list is empty: it heard of no
// speaker, so nothing changed for it). When nothing changed, the pass reads a map per
// participant and sends nothing.
func (s *speakers) tell(r *Room, st *roomSpeakers) {
	if st.version == 0 {
		return
	}
	ps := r.others(nil)
	stale := len(st.told) != len(ps)
	for i := 0; i < len(ps) && !stale; i++ {
		stale = st.told[ps[i]] != st.version
	}
	if !stale {
		return
	}
	data := proto.ActiveSpeakersData{Speakers: append(make([]proto.Speaker, 0, len(st.shown.list)), st.shown.list...)}
	seen := make(map[*Participant]uint64, len(ps))
	for _, p := range ps {
		v, ok := st.told[p]
		if v != st.version && (ok || len(data.Speakers) > 0) {
			p.listener.Notify(proto.MethodActiveSpeakers, data)
			s.notified.Add(1)
		}
		seen[p] = st.version
	}
	st.told = seen
}

// SetRemoteSpeakers records node origin's list of the room's speakers (from its Speakers
// event, carried by the cluster layer). The list is bounded here and checked against the room
// when used: an entry that names no audio producer of that node counts for nothing.
func (r *Room) SetRemoteSpeakers(origin string, list []proto.Speaker) {
	s := r.node.speakers
	if s == nil || origin == "" || origin == r.node.ID() {
		return
	}
	clean := make([]proto.Speaker, 0, min(len(list), MaxSpeakers))
	for _, sp := range list {
		if len(clean) == MaxSpeakers {
			break
		}
		dup := false
		for _, c := range clean {
			dup = dup || c.Producer == sp.Producer
		}
		if sp.Producer == "" || dup {
			continue
		}
		clean = append(clean, proto.Speaker{Producer: sp.Producer, Level: roundLevel(sp.Level)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.remote[r]
	if m == nil {
		m = make(map[string]remoteSpeakers)
		s.remote[r] = m
	}
	if len(clean) == 0 {
		delete(m, origin)
		return
	}
	m[origin] = remoteSpeakers{list: clean, at: time.Now()}
}

// Describe and Collect export the speaker counters.
func (s *speakers) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.notifiedDesc
	ch <- s.changesDesc
}

func (s *speakers) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(s.notifiedDesc, prometheus.CounterValue, float64(s.notified.Load()))
	ch <- prometheus.MustNewConstMetric(s.changesDesc, prometheus.CounterValue, float64(s.changes.Load()))
}
