package node

// RoomSettings are a room's own settings, the same on every node that carries it: set by the
// room API, carried between nodes by the cluster layer.
type RoomSettings struct {
	Metadata string `json:"metadata,omitempty"`
	// MaxParticipants and EmptyTimeout (seconds) override the node's defaults when not 0.
	MaxParticipants int `json:"maxParticipants,omitempty"`
	EmptyTimeout    int `json:"emptyTimeout,omitempty"`
	// CreatedAt is when the room was created (room API) or first opened, Unix milliseconds.
	CreatedAt int64 `json:"createdAt"`
	// UpdatedAt is when the room API last set the settings, Unix milliseconds (0: never, the
	// node's defaults): the version by which a node opening the room adopts another node's
	// settings, and never older ones over a newer local change.
	UpdatedAt int64 `json:"updatedAt,omitempty"`
}

// Settings are the room's settings.
func (r *Room) Settings() RoomSettings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settings
}
