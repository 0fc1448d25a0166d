package cluster

// handleWrites registers the verbs of the actions.
func (a *API) handleWrites() {}
