package cluster_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// get GETs u with accept and returns the status, a header and the body.
func get(t *testing.T, u, accept string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// TestViewerAcrossNodes: the view served by n2 lists the rooms of both nodes as the room API
// does, the nodes with their regions, a room's detail, clear errors for a bad or unknown room,
// and a node that does not answer; the page allows exactly its own script and style.
func TestViewerAcrossNodes(t *testing.T) {
	var deaf atomic.Bool
	net := cluster.NewMemNet()
	net.SetFault(func(m cluster.Msg, to string) int {
		if to == "n1" && deaf.Load() && strings.HasPrefix(m.Subject, "cascade.api.") {
			return 0
		}
		return 1
	})
	net.Start()
	t.Cleanup(net.Close)
	n1, _, c1 := regionMember(t, net, "n1", "eu")
	n2, _, c2 := regionMember(t, net, "n2", "us")
	cluster.NewAPI(c1)
	met(t, c1, c2)
	joinAll(t, n1, "here", "alice", "carol")
	joinAll(t, n2, "there", "bob")
	hs := httptest.NewServer(cluster.NewViewer(cluster.NewAPI(c2)))
	t.Cleanup(hs.Close)

	view := func() cluster.View {
		t.Helper()
		status, h, b := get(t, hs.URL+"/cluster", "application/json")
		var v cluster.View
		if err := json.Unmarshal(b, &v); err != nil || status != http.StatusOK || h.Get("Content-Type") != "application/json" {
			t.Fatalf("view: %d %s %v", status, b, err)
		}
		return v
	}
	v := view()
	var nodes []string
	for _, n := range v.Nodes {
		nodes = append(nodes, n.ID+"/"+n.Region)
	}
	if v.Node != "n2" || fmt.Sprint(nodes) != "[n2/us n1/eu]" {
		t.Fatalf("view from %s, nodes %v: want n2, [n2/us n1/eu]", v.Node, nodes)
	}
	var rooms []string
	for _, r := range v.ClusterRooms {
		rooms = append(rooms, fmt.Sprintf("%s:%d@%v", r.Name, r.Participants, r.Nodes))
	}
	if fmt.Sprint(rooms) != "[here:2@[{n1 eu 2}] there:1@[{n2 us 1}]]" || v.Error != nil || len(v.Unreachable) != 0 || v.ClusterRoomsMore {
		t.Fatalf("cluster rooms %v, error %v, unreachable %v, more %v", rooms, v.Error, v.Unreachable, v.ClusterRoomsMore)
	}

	// A room's detail, from the other node; errors with the protocol's codes.
	status, _, b := get(t, hs.URL+"/cluster?room=here", "")
	var d proto.APIRoomDetail
	if err := json.Unmarshal(b, &d); err != nil || status != http.StatusOK || d.Name != "here" || d.Participants != 2 || d.ProducerList == nil {
		t.Fatalf("detail of here: %d %s", status, b)
	}
	for _, c := range []struct {
		query  string
		status int
		code   string
	}{
		{"room=nowhere", http.StatusNotFound, proto.CodeNotFound},
		{"room=", http.StatusBadRequest, proto.CodeBadRequest},
		{"format=json&room=" + strings.Repeat("x", proto.MaxName+1), http.StatusBadRequest, proto.CodeBadRequest},
	} {
		status, _, b := get(t, hs.URL+"/cluster?"+c.query, "text/html")
		var pe proto.Error
		if err := json.Unmarshal(b, &pe); err != nil || status != c.status || pe.Code != c.code || pe.Message == "" {
			t.Errorf("?%.40s: %d %s, want %d %s", c.query, status, b, c.status, c.code)
		}
	}

	// The page: its script and style inline, each allowed by its hash and nothing else.
	status, h, page := get(t, hs.URL+"/cluster", "text/html,application/xhtml+xml")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", status, h.Get("Content-Type"))
	}
	csp := h.Get("Content-Security-Policy")
	for _, tag := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindSubmatch(page)
		if m == nil || len(m[1]) < 100 {
			t.Fatalf("page has no inline %s", tag)
		}
		sum := sha256.Sum256(m[1])
		if want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q: want default-src 'none' and nothing unsafe", csp)
	}

	// n1 stops answering: the view still lists n2's rooms and names n1.
	deaf.Store(true)
	start := time.Now()
	v = view()
	if len(v.ClusterRooms) != 1 || v.ClusterRooms[0].Name != "there" || fmt.Sprint(v.Unreachable) != "[n1]" || v.Error != nil {
		t.Fatalf("with n1 silent: rooms %+v, unreachable %v, error %v (after %v)", v.ClusterRooms, v.Unreachable, v.Error, time.Since(start))
	}
}
