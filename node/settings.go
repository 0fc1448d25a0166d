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
}

// Settings are the room's settings.
func (r *Room) Settings() RoomSettings {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settings
}
