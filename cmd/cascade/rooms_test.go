package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-sfu/cascade/internal/harness"
	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
)

var cliKeys = auth.Keys{Key: "cli-test-key", Secret: "a-cli-test-secret-of-32-characters"}

// startNodeProcess runs `cascade node` (the real binary) on free loopback ports with cliKeys
// and returns its HTTP URL once it is ready. The test's cleanup kills it.
func startNodeProcess(t *testing.T) string {
	t.Helper()
	bin := harness.Cascade(t)
	httpPort, natsPort := harness.FreePort(t), harness.FreePort(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "node", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"--udp-port", "0", "--tcp-port", "-1", "--relay", "127.0.0.1:0", "--loopback-only", "--workers", "1",
		"--node-id", "cli-node", "--region", "eu", "--api-key", cliKeys.Key, "--api-secret", cliKeys.Secret, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("cascade node output:\n%s", out.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	harness.Eventually(t, 20*time.Second, func() error {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", res.StatusCode)
		}
		return nil
	})
	return base
}

// notes records a client's notifications.
type notes struct {
	mu  sync.Mutex
	got []string
}

func (n *notes) add(method string, data json.RawMessage) {
	n.mu.Lock()
	n.got = append(n.got, method+" "+string(data))
	n.mu.Unlock()
}

func (n *notes) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.got, "\n")
}

func (n *notes) has(method, contains string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.got {
		if strings.HasPrefix(s, method+" ") && strings.Contains(s, contains) {
			return true
		}
	}
	return false
}

// joinNode joins identity to room on the node at base, as a real WebRTC client.
func joinNode(t *testing.T, base, room, identity string, publish bool) (*client.Client, *notes) {
	t.Helper()
	tok, err := cliKeys.Mint(auth.Grant{Room: room, Identity: identity, Publish: publish, Subscribe: true}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n := &notes{}
	c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(base, "http")+"/ws",
		client.Options{Token: tok, LoopbackOnly: true, OnNotification: n.add})
	if err != nil {
		t.Fatalf("join %s: %v", identity, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, n
}

// publishVideo publishes a synthetic VP8 track from c until the test ends, and returns its
// producer id.
func publishVideo(t *testing.T, c *client.Client) string {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		payload := []byte{0x10, 0, 0, 0, 0, 0, 0, 0}
		for seq := uint16(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	res, err := c.Publish(context.Background(), tr)
	if err != nil || len(res.Producers) != 1 {
		t.Fatalf("publish: %+v %v", res, err)
	}
	return res.Producers[0].ID
}

// cli runs a cascade command in-process with the API key pair in the environment.
func cli(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, env(map[string]string{"CASCADE_API_KEY": cliKeys.Key, "CASCADE_API_SECRET": cliKeys.Secret}), &o, &e)
	return code, o.String(), e.String()
}

// row is the table row of stdout whose first column is first (nil when none).
func row(stdout, first string) []string {
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// TestRoomsCommandsAgainstANode: against a real `cascade node` with three participants in a
// room (one publishing), `cascade rooms list --url` prints the room with its participant count;
// the other commands describe, mute, remove and delete, and failures print the API's code and
// exit 1.
func TestRoomsCommandsAgainstANode(t *testing.T) {
	base := startNodeProcess(t)
	pub, pubNotes := joinNode(t, base, "standup", "pub", true)
	producer := publishVideo(t, pub)
	_, _ = joinNode(t, base, "standup", "alice", false)
	bob, _ := joinNode(t, base, "standup", "bob", false)

	var out string
	harness.Eventually(t, 10*time.Second, func() error { // the producer counts once media flows
		code, stdout, stderr := cli("rooms", "list", "--url", base)
		if code != exitOK {
			return fmt.Errorf("exit %d: %s", code, stderr)
		}
		if r := row(stdout, "standup"); len(r) < 5 || r[3] != "1" {
			return fmt.Errorf("no producer yet:\n%s", stdout)
		}
		out = stdout
		return nil
	})
	if !strings.HasPrefix(out, "NAME") {
		t.Fatalf("no header:\n%s", out)
	}
	if r := row(out, "standup"); r[1] != "3" || r[2] != "1" || r[4] != "cli-node(eu):3" {
		t.Fatalf("rooms list: %q, want 3 participants, 1 publisher on cli-node:\n%s", r, out)
	}

	code, stdout, stderr := cli("rooms", "list", "--url", base, "--json")
	var page proto.RoomPage
	if code != exitOK || json.Unmarshal([]byte(stdout), &page) != nil || len(page.Rooms) != 1 || page.Rooms[0].Participants != 3 {
		t.Fatalf("rooms list --json: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = cli("rooms", "get", "standup", "--url", base)
	if r := row(stdout, producer); code != exitOK || r == nil || r[2] != "video" || fmt.Sprint(row(stdout, "participants")) != "[participants 3]" {
		t.Fatalf("rooms get: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = cli("participants", "list", "--url", base, "standup")
	if code != exitOK || row(stdout, "alice") == nil || row(stdout, "bob") == nil || !strings.Contains(strings.Join(row(stdout, "pub"), " "), producer) {
		t.Fatalf("participants list: %d %s %s", code, stdout, stderr)
	}

	// Mute every producer of pub: it and the others hear it was the server.
	code, stdout, stderr = cli("participants", "mute", "--url", base, "standup", "pub")
	if r := row(stdout, producer); code != exitOK || r == nil || r[2] != "true" {
		t.Fatalf("participants mute: %d %s %s", code, stdout, stderr)
	}
	harness.Eventually(t, 5*time.Second, func() error {
		if !pubNotes.has("producerMuted", `"byServer":true`) {
			return fmt.Errorf("pub was not told: %s", pubNotes)
		}
		return nil
	})

	code, _, stderr = cli("participants", "remove", "--url", base, "standup", "bob")
	if code != exitOK {
		t.Fatalf("participants remove: %d %s", code, stderr)
	}
	select {
	case <-bob.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bob's session did not end")
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rooms", "get", "nope"}, "not_found"},
		{[]string{"participants", "remove", "standup", "bob"}, "not_found"},
		{[]string{"rooms", "list", "--api-secret", "another-secret-of-32-characters!!!"}, "unauthorized"},
	} {
		code, _, stderr := cli(append(c.args, "--url", base)...)
		if code != exitError || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %s", c.args, code, stderr, c.want)
		}
	}

	code, _, stderr = cli("rooms", "delete", "--url", base, "standup")
	if code != exitOK {
		t.Fatalf("rooms delete: %d %s", code, stderr)
	}
	select {
	case <-pub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("pub's session did not end with the room")
	}
	harness.Eventually(t, 5*time.Second, func() error {
		if _, stdout, _ := cli("rooms", "list", "--url", base); row(stdout, "standup") != nil {
			return fmt.Errorf("the room is still listed:\n%s", stdout)
		}
		return nil
	})
}

// TestRoomsCommandUsage: bad arguments are usage errors (exit 2) that say what is wrong.
func TestRoomsCommandUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rooms"}, "Usage: cascade rooms list|get|delete"},
		{[]string{"rooms", "frob"}, `unknown command "frob"`},
		{[]string{"rooms", "get"}, "want 1 argument(s) ROOM"},
		{[]string{"rooms", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"rooms", "list", "--limit", "0"}, "--limit 0"},
		{[]string{"rooms", "list", "--url", "ftp://x"}, `--url "ftp://x"`},
		{[]string{"participants", "mute", "r"}, "want 2 argument(s) ROOM IDENTITY"},
		{[]string{"participants", "remove", "r", "i", "--api-secret", "short"}, "api-secret is 5 bytes"},
	} {
		code, _, stderr := cli(c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	// Flags after the arguments count, and "--" ends the flags.
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	pos, err := parseInterspersed(fs, []string{"a", "--json", "b", "--", "--c"})
	if err != nil || strings.Join(pos, " ") != "a b --c" || !*asJSON {
		t.Fatalf("parseInterspersed: %v %v %v", pos, err, *asJSON)
	}
}
