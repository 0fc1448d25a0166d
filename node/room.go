package node

import (
	"sort"
	"sync"
	"time"
)

// ParticipantInfo describes a participant to clients (PROTOCOL.md, "Participant").
type ParticipantInfo struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	// JoinedAt is when the participant joined, in Unix milliseconds: when two sessions of one
	// identity meet in a room (on two nodes), the newer one stays.
	JoinedAt int64 `json:"joinedAt"`
	// Metadata is the application's data about the participant (the token's metadata claim,
	// then the room API's updates); at most proto.MaxMetadata bytes.
	Metadata string `json:"metadata,omitempty"`
	// Epoch counts the session's resumes (PROTOCOL.md, "Resume"): 0 for a fresh join, one more
	// at each resume. Of two copies of one participant id, the higher epoch is the session; the
	// other is stale and is fenced (Room.Supersede).
	Epoch uint64 `json:"epoch,omitempty"`
}

// A Room is one room on one node. It has a router on each worker that serves some of its
// participants: the home router (where its publishers' send transports live) and, once the
// home worker has WorkerConsumers consumers of the room, routers on other workers to which the
// producers are piped in-process.
type Room struct {
	name string
	node *Node
	home *Worker

	mu           sync.Mutex
	participants map[string]*Participant      // local participants, by id
	remote       map[string]remoteParticipant // participants on other nodes, by id
	producers    map[string]*Producer         // live producers (local and remote), by id
	routers      map[*Worker]*router          // the room's router on each worker it uses
	opened       bool                         // the cluster layer knows the room
	settings     RoomSettings

	// Guarded by node.mu: the timer that closes the room once it has been empty here for its
	// empty timeout (its generation, so a timer that fired late does nothing), and whether the
	// room API deleted it (it closes with its last participant, whatever its timeout).
	emptyTimer *time.Timer
	emptyGen   int
	deleted    bool
}

func newRoom(name string, n *Node, home *Worker) *Room {
	return &Room{name: name, node: n, home: home,
		participants: make(map[string]*Participant),
		remote:       make(map[string]remoteParticipant),
		producers:    make(map[string]*Producer),
		routers:      map[*Worker]*router{home: newRouter(home)},
		settings:     RoomSettings{CreatedAt: time.Now().UnixMilli()},
	}
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// subscriberWorker picks the worker for a new receive transport: the room's routers in order of
// creation while they are under the threshold, else a new router on the least-loaded worker
// that has none of this room, else the router with the fewest consumers.
func (r *Room) subscriberWorker() *Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := r.node.opts.WorkerConsumers
	if r.routers[r.home].consumers < limit {
		return r.home
	}
	for _, w := range r.node.workers {
		if rt, ok := r.routers[w]; ok && rt.consumers < limit {
			return w
		}
	}
	var best *Worker
	for _, w := range r.node.workers {
		if _, ok := r.routers[w]; ok {
			continue
		}
		if best == nil || w.load() < best.load() {
			best = w
		}
	}
	if best != nil {
		r.routers[best] = newRouter(best)
		return best
	}
	var fewest *router
	for _, rt := range r.routers {
		if fewest == nil || rt.consumers < fewest.consumers || (rt.consumers == fewest.consumers && rt.worker.index < fewest.worker.index) {
			fewest = rt
		}
	}
	return fewest.worker
}

// consumerAdded counts delta consumers of the room on worker w's router.
func (r *Room) consumerAdded(w *Worker, delta int) {
	r.mu.Lock()
	if rt := r.routers[w]; rt != nil {
		rt.consumers += delta
	}
	r.mu.Unlock()
}

// closeRouters removes the room's routers from their workers (the room closed).
func (r *Room) closeRouters() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range r.routers {
		rt.close()
	}
}

// Routers reports the room's consumers per worker index.
func (r *Room) Routers() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int, len(r.routers))
	for w, rt := range r.routers {
		out[w.index] = rt.consumers
	}
	return out
}

func (r *Room) others(except *Participant) []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Participant, 0, len(r.participants))
	for _, p := range r.participants {
		if p != except {
			out = append(out, p)
		}
	}
	return out
}

// Participants lists the room's participants, sorted by id.
func (r *Room) Participants() []ParticipantInfo {
	r.mu.Lock()
	out := make([]ParticipantInfo, 0, len(r.participants)+len(r.remote))
	for _, p := range r.participants {
		out = append(out, p.Info())
	}
	for _, rp := range r.remote {
		out = append(out, rp.info)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Producers lists the room's live producers, sorted by id.
func (r *Room) Producers() []ProducerInfo {
	r.mu.Lock()
	ps := make([]*Producer, 0, len(r.producers))
	for _, p := range r.producers {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	out := make([]ProducerInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *Room) liveProducers() []*Producer {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := make([]*Producer, 0, len(r.producers))
	for _, p := range r.producers {
		ps = append(ps, p)
	}
	return ps
}

func (r *Room) producer(id string) *Producer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.producers[id]
}

// broadcast notifies every participant but except (nil: everyone).
func (r *Room) broadcast(except *Participant, method string, data any) {
	for _, p := range r.others(except) {
		p.listener.Notify(method, data)
	}
}

// addProducer makes a producer live: the others are told and auto-subscribers consume it.
func (r *Room) addProducer(pr *Producer) {
	r.mu.Lock()
	r.producers[pr.id] = pr
	r.mu.Unlock()
	pr.home.nProducers.Add(1)
	info := pr.Info()
	r.broadcast(pr.publisher(), EventProducerAdded, info)
	if pr.Origin() == "" {
		r.node.emit(ProducerAdded{Room: r, Producer: info})
	}
	for _, p := range r.others(pr.publisher()) {
		if p.autoSubscribe && p.grant.Subscribe {
			_ = p.Subscribe(pr.id)
		}
	}
}

// removeProducer ends a producer: its consumers are removed and the others told.
func (r *Room) removeProducer(pr *Producer) {
	r.mu.Lock()
	_, ok := r.producers[pr.id]
	delete(r.producers, pr.id)
	r.mu.Unlock()
	if !ok {
		return
	}
	pr.home.nProducers.Add(-1)
	for _, c := range pr.close() {
		if c.sub != nil {
			c.sub.dropConsumer(c)
		} else { // a relay sink: the cluster layer forgets it on the ProducerRemoved event
			c.paused.Store(true)
			c.worker.removeConsumer(c)
		}
	}
	pub := pr.publisher()
	r.broadcast(pub, EventProducerRemoved, map[string]string{"id": pr.id, "participant": pr.owner})
	r.node.emit(ProducerRemoved{Room: r, ID: pr.id, Participant: pr.owner, Origin: pr.Origin()})
	if pub != nil { // its publisher's resume credential no longer names it
		pub.listener.Notify(EventResumable, nil)
	}
}

// closeRemote ends the room's remote producers once its last local participant has left.
func (r *Room) closeRemote() {
	r.mu.Lock()
	var prods []*Producer
	for _, pr := range r.producers {
		if pr.Origin() != "" {
			prods = append(prods, pr)
		}
	}
	r.remote = make(map[string]remoteParticipant)
	r.mu.Unlock()
	for _, pr := range prods {
		r.removeProducer(pr)
	}
}

// data delivers a data-channel message of from to every other participant's data consumer.
func (r *Room) data(from *Participant, msg []byte, isString bool) {
	for _, p := range r.others(from) {
		p.sendData(msg, isString)
	}
}
