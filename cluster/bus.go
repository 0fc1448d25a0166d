package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Msg is one message on the bus.
type Msg struct {
	Subject string
	Reply   string // where an answer goes ("" for none)
	Data    []byte
}

// Subscription ends with Unsubscribe.
type Subscription interface {
	Unsubscribe() error
}

// Bus is publish/subscribe/request between nodes: NATS in production (NATSBus), direct calls in
// unit tests and a simulator.
type Bus interface {
	// Publish sends m (with m.Reply set, the receivers' answers go there).
	Publish(m Msg) error
	// Subscribe calls h for every message on subject (NATS wildcards allowed), in order per
	// subscription, on a goroutine of the bus.
	Subscribe(subject string, h func(Msg)) (Subscription, error)
	// Request sends data to subject and returns the first answer.
	Request(ctx context.Context, subject string, data []byte) ([]byte, error)
	// Connected tells whether the bus is up.
	Connected() bool
}

// ErrNoBus is returned by a bus that is down or closed.
var ErrNoBus = errors.New("cluster: bus unavailable")

// NATSBus is the production Bus on a NATS connection.
type NATSBus struct{ nc *nats.Conn }

// NewNATSBus returns the Bus of a NATS connection.
func NewNATSBus(nc *nats.Conn) NATSBus { return NATSBus{nc: nc} }

// Publish implements Bus.
func (b NATSBus) Publish(m Msg) error {
	if m.Reply != "" {
		return b.nc.PublishRequest(m.Subject, m.Reply, m.Data)
	}
	return b.nc.Publish(m.Subject, m.Data)
}

// Subscribe implements Bus. The subscription is flushed to the server before it returns, so
// messages published after Subscribe reach it.
func (b NATSBus) Subscribe(subject string, h func(Msg)) (Subscription, error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { h(Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data}) })
	if err != nil {
		return nil, err
	}
	_ = b.nc.FlushTimeout(time.Second)
	return sub, nil
}

// Request implements Bus.
func (b NATSBus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	m, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// Connected implements Bus.
func (b NATSBus) Connected() bool { return b.nc.IsConnected() }
