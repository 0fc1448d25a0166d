package cluster

// handleReads registers the verbs of the read calls (rooms, room, participants).
func (a *API) handleReads() {}
