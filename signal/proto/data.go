package proto

import "encoding/json"

// Objects (PROTOCOL.md, "Objects").
type (
	// Participant describes a participant.
	Participant struct {
		ID       string `json:"id"`
		Identity string `json:"identity"`
		// JoinedAt is when the participant joined, in Unix milliseconds.
		JoinedAt int64 `json:"joinedAt"`
		// Metadata is the application's data about the participant (the token's metadata
		// claim, then the room API's updates).
		Metadata string `json:"metadata,omitempty"`
		// Epoch counts the session's resumes (0: never resumed; absent then).
		Epoch uint64 `json:"epoch,omitempty"`
	}
	// Producer describes a producer. Codec, ClockRate, Channels and Fmtp are set once media
	// flows.
	Producer struct {
		ID          string `json:"id"`
		Participant string `json:"participant"`
		Kind        string `json:"kind"`          // "audio" or "video"
		Mid         string `json:"mid,omitempty"` // the media section on the publisher's send transport
		Codec       string `json:"codec,omitempty"`
		Muted       bool   `json:"muted"`
		// Origin is the node the publisher is connected to ("" on that node itself).
		Origin    string `json:"origin,omitempty"`
		ClockRate uint32 `json:"clockRate,omitempty"`
		Channels  uint16 `json:"channels,omitempty"`
		Fmtp      string `json:"fmtp,omitempty"`
		// Epoch is the publishing session's epoch when the producer was announced.
		Epoch uint64 `json:"epoch,omitempty"`
		// Layers are a simulcast producer's layers, lowest first (absent: one layer).
		Layers []Layer `json:"layers,omitempty"`
	}
	// ICECandidateInit is the browser's RTCIceCandidateInit. An empty Candidate means end of
	// candidates.
	ICECandidateInit struct {
		Candidate        string  `json:"candidate"`
		SDPMid           *string `json:"sdpMid,omitempty"`
		SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
		UsernameFragment *string `json:"usernameFragment,omitempty"`
	}
)

// Request and response data.
type (
	// JoinData is the data of a join request.
	JoinData struct {
		Token         string `json:"token"`
		AutoSubscribe *bool  `json:"autoSubscribe,omitempty"`
		// Region is the client's region, a placement hint.
		Region string `json:"region,omitempty"`
		// NoRedirect makes the node accept the join (a client that followed a redirect).
		NoRedirect bool `json:"noRedirect,omitempty"`
		// Resume is a resume credential (ResumeToken.Token): the join resumes that session
		// (PROTOCOL.md, "Resume"); Token may then be empty.
		Resume string `json:"resume,omitempty"`
	}
	// JoinResult is the data of a join response: the room, or a redirect to a better node.
	JoinResult struct {
		Participant  Participant   `json:"participant"`
		Room         string        `json:"room"`
		Participants []Participant `json:"participants"`
		Producers    []Producer    `json:"producers"`
		Redirect     *Redirect     `json:"redirect,omitempty"`
		// ICEServers are the node's TURN servers with short-lived credentials, for both
		// transports (the browser's RTCIceServer); absent when the node runs none.
		ICEServers []ICEServer `json:"iceServers,omitempty"`
		// RoomMetadata is the room's metadata (room API), absent when empty.
		RoomMetadata string `json:"roomMetadata,omitempty"`
		// Resume is the session's first resume credential; Resumed tells that this join
		// resumed a session (Participant keeps its id). Nodes are a few other healthy nodes to
		// resume on if this one goes (their URLs are signaling URLs).
		Resume  *ResumeToken `json:"resume,omitempty"`
		Resumed bool         `json:"resumed,omitempty"`
		Nodes   []NodeURL    `json:"nodes,omitempty"`
	}
	// ICEServer is the browser's RTCIceServer: TURN URLs and their credentials.
	ICEServer struct {
		URLs       []string `json:"urls"`
		Username   string   `json:"username,omitempty"`
		Credential string   `json:"credential,omitempty"`
	}
	// Redirect names the node a client should join instead.
	Redirect struct {
		Node string `json:"node"`
		URL  string `json:"url"` // the node's signaling URL (ws://host:port/ws)
	}
	// SDPData carries an offer or an answer: the data of publish and answer requests and of
	// the offer notification.
	SDPData struct {
		SDP string `json:"sdp"`
	}
	// PublishResult is the data of a publish response.
	PublishResult struct {
		SDP       string     `json:"sdp"`
		Producers []Producer `json:"producers"`
	}
	// TrickleData carries one ICE candidate: the data of the trickle request and notification.
	TrickleData struct {
		Transport string           `json:"transport"`
		Candidate ICECandidateInit `json:"candidate"`
	}
	// ProducerData names a producer: the data of unpublish, subscribe and unsubscribe.
	ProducerData struct {
		Producer string `json:"producer"`
	}
	// MuteData mutes or unmutes a producer.
	MuteData struct {
		Producer string `json:"producer"`
		Muted    bool   `json:"muted"`
	}
	// MessageData is the data of a message request: an application message for the room.
	MessageData struct {
		Data json.RawMessage `json:"data"`
	}
)

// Notification data, besides SDPData (offer), TrickleData (trickle), Participant
// (participantJoined) and Producer (producerAdded).
type (
	// ParticipantLeft is the data of a participantLeft notification.
	ParticipantLeft struct {
		ID string `json:"id"`
	}
	// ProducerRemoved is the data of a producerRemoved notification.
	ProducerRemoved struct {
		ID          string `json:"id"`
		Participant string `json:"participant"`
	}
	// ProducerMuted is the data of a producerMuted notification. ByServer: the room API muted
	// it (its publisher cannot unmute it until an unmuteRequested).
	ProducerMuted struct {
		ID       string `json:"id"`
		Muted    bool   `json:"muted"`
		ByServer bool   `json:"byServer,omitempty"`
	}
	// RoomUpdated is the data of a roomUpdated notification: the room's metadata changed.
	RoomUpdated struct {
		Metadata string `json:"metadata"`
	}
	// UnmuteRequested is the data of an unmuteRequested notification, to a publisher: the room
	// API asks it to unmute a producer the server muted; it may, with a mute request.
	UnmuteRequested struct {
		Producer string `json:"producer"`
	}
	// Message is the data of a message notification: an application message from a
	// participant of the room (the sender gets its own, too).
	Message struct {
		From     string          `json:"from"`
		Identity string          `json:"identity"`
		Data     json.RawMessage `json:"data"`
	}
	// Closed is the data of a closed notification: the session ends.
	Closed struct {
		Reason string `json:"reason"`
	}
)
