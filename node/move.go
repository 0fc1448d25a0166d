package node

import "errors"

// errTodo marks the parts of session resume still being built (issue 13); nothing calls them yet.
var errTodo = errors.New("not built yet")

// ErrResume refuses a resume or a resumed publish: the session's credential does not allow it
// (an unknown producer id, a stale epoch); the signaling layer answers resume_refused or
// bad_request.
var ErrResume = errors.New("resume refused")

// Moving producers (PROTOCOL.md, "Resume"). A producer keeps its id, its Producer object on
// every node and its consumers when its publisher resumes on another node: only its source
// changes. Each source has a generation; a consumer forwards the generation it started with
// until a keyframe of the new one arrives (audio at once), and rewrites the new source's
// sequence numbers, timestamps and VP8 PictureID/TL0PICIDX to continue its own, so a
// subscriber's track goes on without a jump (the keyframe-gated switch, which simulcast layer
// switching uses too).

// MoveProducer records that producer info.ID of the room now comes from origin (a node id; ""
// is never passed: a local publisher adopts a producer through Participant.PublishAs). A
// producer the room did not have is added as a remote producer (AddRemoteProducer); a remote
// one changes origin; a local one (its publisher's stale session here was superseded) becomes
// remote. Its consumers stay. It emits ProducerMoved and tells the local participants
// producerMoved; it returns the producer and its new generation. A move to the origin it
// already has changes nothing (same generation).
func (r *Room) MoveProducer(info ProducerInfo, origin string) (*Producer, uint32, error) {
	return nil, 0, errTodo
}

// Generation is the number of the producer's current source (0 until it first moves).
func (p *Producer) Generation() uint32 { return 0 }

// InjectFrom is Inject for a packet of source generation gen (from the relay pipe that was
// set up for that generation); packets of a generation that is neither the current one nor
// the one it replaced are dropped.
func (p *Producer) InjectFrom(gen uint32, raw []byte) { p.Inject(raw) }

// PublishAs is Publish on a resumed session: ids maps media sections of the offer to the ids
// of producers the session had (Participant.Resumable); those producers keep their ids, and
// a Producer of that id already in the room (remote: the publisher's old node; or local: the
// superseded session's) is adopted, consumers and all: the room sees a move, not a removal
// and an addition. An id the session did not have is ErrResume.
func (p *Participant) PublishAs(offer string, gather bool, ids map[string]string) (string, []ProducerInfo, error) {
	if len(ids) == 0 {
		return p.Publish(offer, gather)
	}
	return "", nil, errTodo
}
