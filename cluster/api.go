package cluster

// API is the room API of the whole cluster (signal.Rooms): it answers from every node's own
// part, gathered with Ask, and carries actions as signed questions to the nodes that hold the
// sessions.
type API struct {
	c *Cluster
}

// NewAPI returns the cluster's room API, and makes this node answer the other nodes' room API
// questions.
func NewAPI(c *Cluster) *API {
	a := &API{c: c}
	a.handleReads()
	a.handleWrites()
	return a
}
