package proto

// Session resume, liveness and migration (PROTOCOL.md, "Resume").
//
// A client learns that its node is gone from the WebSocket closing, or from its pings going
// unanswered (PingInterval, PingDeadline). It then joins another node with the resume
// credential of its session (JoinData.Resume): the node restores the session under the same
// participant id, the client publishes its tracks again naming their producer ids
// (PublishData.ProducerIDs), and the other participants see no leave and no join, only
// producerMoved for its producers.
const (
	// MethodPing is a client's liveness request: `{}`, answered `{}`.
	MethodPing = "ping"
	// MethodResumeToken notifies a fresh resume credential (ResumeToken): after the join, when
	// the participant's producers change, and every ResumeRefresh.
	MethodResumeToken = "resumeToken"
	// MethodProducerMoved notifies that a producer's publisher resumed on another node: its
	// media now comes from there, on the same track. Clients need not act on it.
	MethodProducerMoved = "producerMoved"
	// MethodMigrate asks the client to move to another node (the node is draining): join the
	// target with the resume credential, publish there, then leave this node (MigrateData).
	MethodMigrate = "migrate"
)

// Liveness: the clients' defaults (cascade.js, signal/client). A node answers a ping at once,
// so a node that answers nothing for PingDeadline is gone (a machine that vanished without a
// TCP reset, a blackholed path).
const (
	PingIntervalMillis = 1000
	PingDeadlineMillis = 3000
)

// ResumeRefreshSeconds is how often a node sends a session a fresh resume credential;
// ResumeTTLSeconds is how long one is valid.
const (
	ResumeRefreshSeconds = 60
	ResumeTTLSeconds     = 300
)

// ReasonResumed ends a session that resumed elsewhere (a stale copy on a node that was cut
// off, or the old session of a migration): close CloseResumed. The client already has its new
// session and must not reconnect this one.
const (
	ReasonResumed = "resumed"
	CloseResumed  = 4005
)

// CodeResumeRefused: the resume credential is invalid, expired, already used (a newer session
// of the participant exists) or its room is gone. The client joins afresh with its token (a new
// participant id).
const CodeResumeRefused = "resume_refused"

type (
	// ResumeToken is a session's resume credential: opaque to the client, valid once, until
	// Expires (Unix milliseconds). It is the data of the resumeToken notification and the
	// join answer's resume.
	ResumeToken struct {
		Token   string `json:"token"`
		Expires int64  `json:"expires"`
	}
	// NodeURL names a node a client may join: the join answer lists a few healthy ones for a
	// resume (never the node itself, never a draining one).
	NodeURL struct {
		ID     string `json:"id"`
		URL    string `json:"url"`
		Region string `json:"region,omitempty"`
	}
	// PublishData is the data of a publish request. ProducerIDs, on a resumed session only,
	// maps media sections (mid) of the offer to the ids of the producers the session had: the
	// producers keep their ids. An id the session did not have is bad_request.
	PublishData struct {
		SDP         string            `json:"sdp"`
		ProducerIDs map[string]string `json:"producerIds,omitempty"`
	}
	// ProducerMoved is the data of a producerMoved notification.
	ProducerMoved struct {
		ID          string `json:"id"`
		Participant string `json:"participant"`
	}
	// MigrateData is the data of a migrate notification: join URL (a node's signaling URL)
	// with the resume credential, then leave this node. Deadline (Unix milliseconds) is when
	// this node closes the session anyway.
	MigrateData struct {
		Node     string `json:"node"`
		URL      string `json:"url"`
		Reason   string `json:"reason"` // "drain"
		Deadline int64  `json:"deadline"`
	}
)
