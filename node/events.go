package node

// Events receives what happens on this node that the cluster layer acts on: rooms opening and
// closing, local participants and producers, room messages, and demand for remote producers.
// The node calls Event synchronously and never under one of its locks. Event must not block
// for long: RoomOpened may wait for the room's state from other nodes (the join waits for it),
// every other event must return at once (Demand in particular is posted, not served inline).
type Events interface {
	Event(e Event)
}

// Event is one of RoomOpened, RoomClosed, ParticipantJoined, ParticipantLeft,
// ParticipantUpdated, ProducerAdded, ProducerRemoved, ProducerMuted, Message, Data and Demand.
type Event interface{ isEvent() }

// RoomOpened: a room got its first participant here, or the room API opened it here (OpenRoom);
// the join completes after Event returns, so the cluster layer can add the room's remote
// participants and producers (and adopt its settings) first.
type RoomOpened struct{ Room *Room }

// RoomClosed: the room closed here (its last local participant left and its empty timeout
// passed, or the room API deleted it); its remote producers are gone here.
type RoomClosed struct{ Room *Room }

// ParticipantJoined: a participant joined here. Replaces lists the sessions of the same
// identity on other nodes that this node knew of when it joined: those are older, and close.
type ParticipantJoined struct {
	Room        *Room
	Participant ParticipantInfo
	Replaces    []string
	// Resumed: the participant resumed its session here (same id, Participant.Epoch one more
	// than the session it fences); the other nodes move it here without a leave or a join.
	Resumed bool
}

// ParticipantLeft: a local participant left.
type ParticipantLeft struct {
	Room *Room
	ID   string
}

// ProducerAdded: a local participant published a producer.
type ProducerAdded struct {
	Room     *Room
	Producer ProducerInfo
}

// ProducerRemoved: a producer ended here, local (Origin "") or remote; its relay sinks are
// already detached from the fan-out and the cluster layer forgets its pipes.
type ProducerRemoved struct {
	Room        *Room
	ID          string
	Participant string
	Origin      string
}

// ProducerMuted: a local producer was muted or unmuted. ByServer: the room API muted it.
type ProducerMuted struct {
	Room     *Room
	ID       string
	Muted    bool
	ByServer bool
}

// ParticipantUpdated: the room API changed a local participant's metadata.
type ParticipantUpdated struct {
	Room        *Room
	Participant ParticipantInfo
}

// Message: a local participant sent an application message to the room.
type Message struct {
	Room     *Room
	From     string
	Identity string
	Data     any
}

// Data: a local participant sent a data-channel message to the room.
type Data struct {
	Room     *Room
	Data     []byte
	IsString bool
}

// Demand: a remote producer got its first consumer here (Wanted) or lost its last one. The
// cluster layer pipes it here or stops; it reads Producer.Wanted again when it acts, so a
// burst of changes collapses into the last state.
type Demand struct {
	Producer *Producer
	Wanted   bool
}

// ProducerMoved: a producer of the room changed origin (its publisher resumed on another node,
// or here): Producer.Origin() is the new one ("" for this node), From the old one ("" when it
// was this node). Its consumers stay and switch to the new source at its first keyframe
// (Producer.Generation() numbers the sources). The cluster layer pipes the producer from the new
// origin if it is Wanted here, tagging what it injects with the new generation, and lets the old
// pipe go once the switch had time (at once when From is gone).
type ProducerMoved struct {
	Room     *Room
	Producer *Producer
	From     string
}

func (RoomOpened) isEvent()         {}
func (ProducerMoved) isEvent()      {}
func (RoomClosed) isEvent()         {}
func (ParticipantJoined) isEvent()  {}
func (ParticipantLeft) isEvent()    {}
func (ParticipantUpdated) isEvent() {}
func (ProducerAdded) isEvent()      {}
func (ProducerRemoved) isEvent()    {}
func (ProducerMuted) isEvent()      {}
func (Message) isEvent()            {}
func (Data) isEvent()               {}
func (Demand) isEvent()             {}

// SetEvents connects the node to the cluster layer; call it before the first Join. A node
// without one is a single node.
func (n *Node) SetEvents(e Events) { n.events = e }

// emit hands e to the cluster layer, if any.
func (n *Node) emit(e Event) {
	if n.events != nil {
		n.events.Event(e)
	}
}
