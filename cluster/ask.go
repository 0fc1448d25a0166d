package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/nats-io/nuid"
)

// Asking every node: the room API's transport. A node asks the cluster a question (a verb and
// a body) on cascade.api.<verb>; every node answers with its own part on the asker's reply
// subject, both signed like every control message. The asker answers itself in-process, so a
// node alone needs no bus, and it knows from membership which nodes to wait for: the nodes that
// did not answer in time are named, never silently missing. A node that left the membership
// within its participants' resume grace is asked too (see departed): it may only be slow, and
// hold sessions the others no longer list.

// DefaultAskTimeout bounds how long an ask waits for the nodes' answers.
const DefaultAskTimeout = 2 * time.Second

const (
	typeAsk       = "ask"
	typeAskAnswer = "askAnswer"
)

func subjectAsk(verb string) string { return "cascade.api." + verb }

func subjectAskReply(nodeID, token string) string { return "cascade.apireply." + nodeID + "." + token }

// askBody is the body of an ask envelope. Reply is inside the signed body, so a copy of the
// question cannot divert the answers.
type askBody struct {
	Verb  string          `json:"verb"`
	Reply string          `json:"reply"`
	Body  json.RawMessage `json:"body"`
}

// answerBody is one node's answer: its part (Body) or why it has none (Error).
type answerBody struct {
	Body  json.RawMessage `json:"body,omitempty"`
	Error *proto.Error    `json:"error,omitempty"`
}

// AskHandler answers a question of node from with this node's own part. A *proto.Error is
// passed to the asker as is; any other error as an internal one.
type AskHandler func(from string, body json.RawMessage) (any, error)

// Answer is one node's answer to an ask.
type Answer struct {
	Node  string
	Body  json.RawMessage
	Error *proto.Error
}

// asks is the questions this node answers and the asks it waits for.
type asks struct {
	mu       sync.Mutex
	handlers map[string]AskHandler
	waits    map[string]chan Envelope // by reply token
}

// HandleAsk makes this node answer verb with h. Register every verb before the node serves.
func (c *Cluster) HandleAsk(verb string, h AskHandler) {
	c.asks.mu.Lock()
	c.asks.handlers[verb] = h
	c.asks.mu.Unlock()
}

// Ask puts verb and body to every live node, this one included, and to the nodes that left
// within the resume grace, and returns their answers sorted by node id, and the nodes that did
// not answer before ctx ended or the ask timeout (DefaultAskTimeout) passed.
func (c *Cluster) Ask(ctx context.Context, verb string, body any) (answers []Answer, unreachable []string, err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultAskTimeout)
	defer cancel()
	expect := c.askable()
	var ch chan Envelope
	if len(expect) > 0 {
		token := nuid.Next()
		ch = make(chan Envelope, len(expect)+8)
		c.asks.mu.Lock()
		c.asks.waits[token] = ch
		c.asks.mu.Unlock()
		defer func() {
			c.asks.mu.Lock()
			delete(c.asks.waits, token)
			c.asks.mu.Unlock()
		}()
		reply := subjectAskReply(c.me, token)
		env, err := c.stamp.Seal(typeAsk, askBody{Verb: verb, Reply: reply, Body: b})
		if err != nil {
			return nil, nil, err
		}
		if err := c.bus.Publish(Msg{Subject: subjectAsk(verb), Reply: reply, Data: env}); err != nil {
			ch = nil // nobody will answer: every peer is unreachable
		}
	}
	answers = append(answers, c.answer(c.me, verb, b))
wait:
	for ch != nil && len(expect) > 0 {
		select {
		case e := <-ch:
			if !expect[e.Node] {
				continue // an answer from a node not asked (it joined since), or a second one
			}
			var a answerBody
			if json.Unmarshal(e.Body, &a) != nil {
				continue
			}
			delete(expect, e.Node)
			answers = append(answers, Answer{Node: e.Node, Body: a.Body, Error: a.Error})
		case <-ctx.Done():
			break wait
		}
	}
	for id := range expect {
		unreachable = append(unreachable, id)
	}
	sort.Strings(unreachable)
	sort.Slice(answers, func(i, j int) bool { return answers[i].Node < answers[j].Node })
	return answers, unreachable, nil
}

// askable is the nodes a question to the cluster waits for: the peers, and the nodes that left
// within the resume grace (see departed), this one excluded.
func (c *Cluster) askable() map[string]bool {
	expect := map[string]bool{}
	for _, p := range c.members.Peers() {
		expect[p.ID] = true
	}
	for _, id := range c.gone.recent(c.o.Clock.Now()) { // after Peers: see nodeGone
		expect[id] = true
	}
	delete(expect, c.me)
	return expect
}

// answer runs this node's handler of verb for a question of node from.
func (c *Cluster) answer(from, verb string, body json.RawMessage) Answer {
	c.asks.mu.Lock()
	h := c.asks.handlers[verb]
	c.asks.mu.Unlock()
	a := Answer{Node: c.me}
	if h == nil {
		a.Error = &proto.Error{Code: proto.CodeUnknownMethod, Message: "node " + c.me + " does not answer " + verb}
		return a
	}
	v, err := h(from, body)
	var pe *proto.Error
	switch {
	case errors.As(err, &pe):
		a.Error = pe
	case err != nil:
		a.Error = &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
	default:
		if a.Body, err = json.Marshal(v); err != nil {
			a.Error = &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
		}
	}
	return a
}

// onAsk answers another node's question (subject cascade.api.<verb>).
func (c *Cluster) onAsk(m Msg) {
	e, ok := c.receive(m)
	if !ok || e.Type != typeAsk || m.Reply == "" {
		return
	}
	var q askBody
	if json.Unmarshal(e.Body, &q) != nil {
		c.reject(rejMalformed, e.Node)
		return
	}
	if q.Reply != m.Reply || subjectAsk(q.Verb) != m.Subject || !strings.HasPrefix(q.Reply, subjectAskReply(e.Node, "")) {
		c.reject(rejMismatch, e.Node) // the verb is not the subject's, or the answers were diverted
		return
	}
	a := c.answer(e.Node, q.Verb, q.Body)
	if b, err := c.stamp.Seal(typeAskAnswer, answerBody{Body: a.Body, Error: a.Error}); err == nil {
		_ = c.bus.Publish(Msg{Subject: q.Reply, Data: b})
	}
}

// onAskAnswer hands an answer to the Ask waiting for it.
func (c *Cluster) onAskAnswer(m Msg) {
	e, ok := c.receive(m)
	if !ok || e.Type != typeAskAnswer {
		return
	}
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.asks.mu.Lock()
	ch := c.asks.waits[token]
	c.asks.mu.Unlock()
	if ch != nil {
		select {
		case ch <- e:
		default:
		}
	}
}
