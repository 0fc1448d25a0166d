package signal_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/internal/vp8pub"
	"github.com/pion/webrtc/v4"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/cascade-sfu/cascade/turnsrv"
)

// startTURNNode starts a loopback node with an embedded TURN server (UDP and TCP on 127.0.0.1)
// that hands its servers to every participant, as cmd/cascade wires them.
func startTURNNode(t *testing.T) (*env, *turnsrv.Server) {
	t.Helper()
	var ts atomic.Pointer[turnsrv.Server]
	e := startNode(t, node.Options{Workers: 1}, nil, func(so *signal.Options) {
		so.ICEServers = func(participant string) []proto.ICEServer {
			is, err := ts.Load().ICEServer(participant, time.Hour)
			if err != nil {
				t.Errorf("ICEServer: %v", err)
				return nil
			}
			return []proto.ICEServer{{URLs: is.URLs, Username: is.Username, Credential: is.Credential}}
		}
	})
	var media []turnsrv.Media
	for i := range e.node.Workers() {
		media = append(media, turnsrv.Media{Addr: e.node.WorkerAddr(i).(*net.UDPAddr).AddrPort()})
	}
	s, err := turnsrv.New(turnsrv.Options{Secret: "a-turn-secret-for-the-signal-tests", UDP: "127.0.0.1:0", TCP: "127.0.0.1:0",
		Host: "127.0.0.1", RelayIPs: []net.IP{net.IPv4(127, 0, 0, 1)}, RelayBind: "127.0.0.1", Media: media, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ts.Store(s)
	return e, s
}

// TestJoinHandsOutTURN: the join response carries the node's TURN servers with credentials for
// the participant, and a subscriber whose policy is relay-only receives media through them.
func TestJoinHandsOutTURN(t *testing.T) {
	e, ts := startTURNNode(t)
	_, res := publishVideo(t, e, "turn", "pub", false)

	var packets atomic.Int64
	sub, err := client.Dial(context.Background(), e.ws, client.Options{Token: e.token("turn", "viewer", false, true),
		LoopbackOnly: true, ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		OnTrack: func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				packets.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })

	servers := sub.Join.ICEServers
	if len(servers) != 1 || strings.Join(servers[0].URLs, " ") != strings.Join(ts.URLs(), " ") {
		t.Fatalf("join iceServers %+v, want the URLs %q", servers, ts.URLs())
	}
	if u := servers[0].Username; !strings.HasSuffix(u, ":"+sub.Join.Participant.ID) || servers[0].Credential == "" {
		t.Fatalf("join iceServers username %q credential %q: want <expiry>:%s and a credential", u, servers[0].Credential, sub.Join.Participant.ID)
	}
	checkFor(t, 15*time.Second, func() error {
		if n := packets.Load(); n < 10 {
			var turnm []string
			for _, l := range strings.Split(scrape(t, e.http.URL+"/metrics"), "\n") {
				if strings.HasPrefix(l, "cascade_turn_") {
					turnm = append(turnm, l)
				}
			}
			state := "no recv transport"
			if pc := sub.Recv(); pc != nil {
				state = pc.ConnectionState().String() + "/" + pc.ICEConnectionState().String()
			}
			return fmt.Errorf("relay-only subscriber (%s): %d packets of %s; %s", state, n, res.Producers[0].ID, strings.Join(turnm, ", "))
		}
		return nil
	})
	pair, err := selectedPair(sub.Recv())
	if err != nil {
		t.Fatal(err)
	}
	if pair != webrtc.ICECandidateTypeRelay {
		t.Fatalf("subscriber's selected local candidate is %s, want relay", pair)
	}
	m := scrape(t, e.http.URL+"/metrics")
	for _, want := range []string{`cascade_turn_relayed_packets_total{direction="to_client"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A node without TURN hands out no ICE servers.
	plain := newEnv(t, 1, 100)
	if p := plain.join("r", "x", false, true); len(p.Join.ICEServers) != 0 {
		t.Errorf("a node without TURN handed out %+v", p.Join.ICEServers)
	}
}

// selectedPair returns the type of the local candidate of pc's selected candidate pair.
func selectedPair(pc *webrtc.PeerConnection) (webrtc.ICECandidateType, error) {
	stats := pc.GetStats()
	for _, s := range stats {
		cp, ok := s.(webrtc.ICECandidatePairStats)
		if !ok || !cp.Nominated || cp.State != webrtc.StatsICECandidatePairStateSucceeded {
			continue
		}
		if lc, ok := stats[cp.LocalCandidateID].(webrtc.ICECandidateStats); ok {
			return lc.CandidateType, nil
		}
	}
	return 0, fmt.Errorf("no selected candidate pair")
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="ice-server"; username="([^"]+)"; credential="([^"]+)"; credential-type="password"$`)

// TestWHIPLinkHeaders: the answer to a WHIP (and WHEP) POST announces the TURN servers in Link
// headers (RFC 9725, section 4.6), with credentials for that session.
func TestWHIPLinkHeaders(t *testing.T) {
	e, ts := startTURNNode(t)
	enc, err := loopbackAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if _, err := enc.AddTrack(newSource(t, webrtc.MimeTypeVP8, "v", "obs").track); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/whip/linkroom", strings.NewReader(vp8pub.Offer(t, enc)))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+e.token("linkroom", "obs", true, false))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST: %s", resp.Status)
	}
	id := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	links := resp.Header.Values("Link")
	if len(links) != len(ts.URLs()) {
		t.Fatalf("Link headers %q, want one per URL of %q", links, ts.URLs())
	}
	for i, l := range links {
		m := linkRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("Link header %q is not an ice-server link with credentials", l)
		}
		if m[1] != ts.URLs()[i] || !strings.HasSuffix(m[2], ":"+id) {
			t.Errorf("Link header %q: want URL %s and a username for session %s", l, ts.URLs()[i], id)
		}
	}
}
