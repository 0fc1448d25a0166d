package cluster

import "github.com/nats-io/nats-server/v2/server"

// EmbeddedServer is the embedded NATS server, for tests that count its routes and gateways.
func (n *NATS) EmbeddedServer() *server.Server { return n.embedded }
