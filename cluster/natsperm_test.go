package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/node"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// docsPermissions is the nats-server authorization block of docs/DEPLOYMENT.md, between its
// markers, unfenced.
func docsPermissions(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/DEPLOYMENT.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	_, rest, ok := strings.Cut(s, "<!-- nats-node-permissions: begin")
	block, _, ok2 := strings.Cut(rest, "<!-- nats-node-permissions: end -->")
	if !ok || !ok2 {
		t.Fatal("docs/DEPLOYMENT.md: no nats-node-permissions block")
	}
	_, block, _ = strings.Cut(block, "```\n")
	block, _, _ = strings.Cut(block, "```")
	return block
}

// TestNATSNodePermissionsDocumented: two nodes on an external nats-server configured with the
// documented authorization block (and nothing more) see each other, share a room (events and
// syncs) and answer a pipe request; the same user cannot publish outside the node subjects.
func TestNATSNodePermissionsDocumented(t *testing.T) {
	const password = "node-password-0123456789"
	t.Setenv("CASCADE_NATS_PASSWORD", password)
	port := harness.FreePort(t)
	conf := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\n%s", port, docsPermissions(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the documented authorization block: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s := startNATS(t, opts)
	defer s.Shutdown()
	url := fmt.Sprintf("nats://cascade:%s@127.0.0.1:%d", password, port)

	n1, ns1, c1 := member(t, node.Options{ID: "n1"}, cluster.NATSOptions{URL: url})
	n2, ns2, c2 := member(t, node.Options{ID: "n2"}, cluster.NATSOptions{URL: url})
	// Every publish and subscription of the nodes must be allowed: the cluster converges even
	// when some are not (syncs repair), so count the server's refusals instead.
	var refused atomic.Int32
	for _, ns := range []*cluster.NATS{ns1, ns2} {
		ns.Conn().SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			t.Logf("node connection: %v", err)
			refused.Add(1)
		})
	}
	defer func() {
		if n := refused.Load(); n > 0 {
			t.Errorf("the documented permissions refused %d operations of the nodes", n)
		}
	}()
	seeEachOther(t, c1, c2)
	alice, err := n1.Join("room", "alice", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := n2.Join("room", "bob", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if got := c1.Rooms().Participants("room"); got[bob.ID()] != "n2" {
			return fmt.Errorf("n1 sees %v", got)
		}
		if got := c2.Rooms().Participants("room"); got[alice.ID()] != "n1" {
			return fmt.Errorf("n2 sees %v", got)
		}
		return nil
	})
	// With the room open on both, a join travels as a room event.
	carol, err := n1.Join("room", "carol", node.Grant{Subscribe: true}, false, quiet{})
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, 2*time.Second, func() error {
		if got := c2.Rooms().Participants("room"); got[carol.ID()] != "n1" {
			return fmt.Errorf("n2 sees %v", got)
		}
		return nil
	})

	// A room API question reaches the other node and its answer comes back.
	c2.HandleAsk("ping", func(string, json.RawMessage) (any, error) { return "pong", nil })
	if answers, unreachable, err := c1.Ask(context.Background(), "ping", nil); err != nil || len(unreachable) > 0 ||
		len(answers) != 2 || string(answers[1].Body) != `"pong"` {
		t.Fatalf("an ask under the node permissions: %+v, unreachable %v, %v", answers, unreachable, err)
	}

	// A request on a relay subject and its reply at the requester's inbox (what a pipe request
	// does), between two connections of the node user.
	var violated atomic.Bool
	nc := func() *nats.Conn {
		c, err := nats.Connect(url, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				violated.Store(true)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	responder, requester := nc(), nc()
	if _, err := responder.Subscribe("cascade.relay.x.pipe", func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if m, err := requester.RequestWithContext(ctx, "cascade.relay.x.pipe", []byte("pipe?")); err != nil || string(m.Data) != "ok" {
		t.Fatalf("a pipe-like request under the node permissions: %v", err)
	}
	// Outside the node subjects: refused.
	if err := requester.Publish("other.subject", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = requester.Flush()
	checkFor(t, 3*time.Second, func() error {
		if !violated.Load() {
			return fmt.Errorf("publish outside the node subjects not refused")
		}
		return nil
	})
}
