package cluster

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// ViewRooms is how many rooms of the cluster the view lists (the first, by name); the room API
// pages through the rest.
const ViewRooms = 1000

// View is the cluster as this node sees it: GET /cluster?format=json.
type View struct {
	Node string `json:"node"`
	// Nodes are this node, then its live peers, with their region and load.
	Nodes []node.Stats `json:"nodes"`
	// Rooms are the rooms open on this node (tools and tests read this node's part here).
	Rooms []RoomView `json:"rooms"`
	Links []string   `json:"relay_links"`

	// ClusterRooms is every room of the cluster (the first ViewRooms, by name), as the room
	// API lists them; ClusterRoomsMore is set when there are more.
	ClusterRooms     []proto.APIRoom `json:"cluster_rooms"`
	ClusterRoomsMore bool            `json:"cluster_rooms_more,omitempty"`
	// Unreachable are the nodes that did not answer the listing in time: their rooms may lack.
	Unreachable []string `json:"unreachable,omitempty"`
	// Error tells why the cluster listing is missing (ClusterRooms is then empty).
	Error *proto.Error `json:"error,omitempty"`
}

// RoomView is one room open on this node.
type RoomView struct {
	Name         string `json:"name"`
	Participants int    `json:"participants"`
	// Publishers are the participants with producers, sorted.
	Publishers []string `json:"publishers"`
	// PerNode counts the room's participants on each node (this one included).
	PerNode   map[string]int `json:"per_node"`
	Producers []ProducerView `json:"producers"`
}

// ProducerView is a producer and its relay tree.
type ProducerView struct {
	node.ProducerInfo
	// Tree lists the nodes carrying the producer and the node each gets it from.
	Tree []Edge `json:"tree"`
}

// Edge is one relay hop.
type Edge = relay.Edge

// Viewer serves /cluster: the page for browsers, JSON otherwise (or with ?format=json), and
// one room's detail with ?room=NAME.
type Viewer struct {
	n       *node.Node
	members *Membership
	state   *RoomState
	pipes   *relay.Pipes
	api     *API
	page    page
}

// NewViewer returns the /cluster handler of the API's node; the cluster-wide listing and the
// rooms' detail come from the room API, so the view and the API always agree.
func NewViewer(a *API) *Viewer {
	c := a.c
	return &Viewer{n: c.n, members: c.members, state: c.state, pipes: c.pipes, api: a, page: newPage()}
}

// View reports this node's part of the cluster: the nodes it sees, its own rooms and links.
func (v *Viewer) View() View {
	out := View{Node: v.n.ID(), Nodes: append([]node.Stats{v.n.Stats()}, v.peers()...), Links: v.pipes.Transport().Links()}
	sort.Strings(out.Links)
	for _, r := range v.n.Rooms() {
		rv := RoomView{Name: r.Name(), Participants: len(r.Participants()), Publishers: []string{}, PerNode: v.state.Counts(r.Name())}
		local, _ := r.LocalState()
		rv.PerNode[out.Node] = len(local)
		publishers := map[string]bool{}
		for _, p := range r.Producers() {
			if !publishers[p.Participant] {
				publishers[p.Participant] = true
				rv.Publishers = append(rv.Publishers, p.Participant)
			}
			pv := ProducerView{ProducerInfo: p, Tree: v.pipes.Trees().Edges(p.ID)}
			if pv.Origin == "" {
				pv.Origin = out.Node
			}
			rv.Producers = append(rv.Producers, pv)
		}
		sort.Strings(rv.Publishers)
		out.Rooms = append(out.Rooms, rv)
	}
	sort.Slice(out.Rooms, func(i, j int) bool { return out.Rooms[i].Name < out.Rooms[j].Name })
	return out
}

// peers are the live peers sorted by id, so that the page does not reorder them between
// refreshes.
func (v *Viewer) peers() []node.Stats {
	p := v.members.Peers()
	sort.Slice(p, func(i, j int) bool { return p[i].ID < p[j].ID })
	return p
}

// ClusterView is View with the cluster-wide listing of the room API added. A listing that
// fails leaves this node's part intact and says why in Error.
func (v *Viewer) ClusterView(ctx context.Context) View {
	out := v.View()
	out.ClusterRooms = []proto.APIRoom{}
	page, err := v.api.ListRooms(ctx, "", ViewRooms)
	if err != nil {
		out.Error = asProtoError(err)
		return out
	}
	if page.Rooms != nil {
		out.ClusterRooms = page.Rooms
	}
	out.ClusterRoomsMore = page.Next != ""
	out.Unreachable = page.Unreachable
	return out
}

// asProtoError is err as the wire's error object (internal when it is not one).
func asProtoError(err error) *proto.Error {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &proto.Error{Code: proto.CodeInternal, Message: err.Error()}
}

// The page is cluster.html with its style and script put in, so that the page needs no
// second request and a strict Content-Security-Policy can allow exactly them by hash.
var (
	//go:embed cluster.html
	pageHTML string
	//go:embed cluster.css
	pageCSS string
	//go:embed cluster.js
	pageJS string
)

// page is the assembled page and its Content-Security-Policy.
type page struct {
	body []byte
	csp  string
}

func newPage() page {
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	body := strings.Replace(pageHTML, "/*STYLE*/", pageCSS, 1)
	body = strings.Replace(body, "/*SCRIPT*/", pageJS, 1)
	return page{body: []byte(body), csp: "default-src 'none'; connect-src 'self'; script-src " + hash(pageJS) +
		"; style-src " + hash(pageCSS) + "; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
}

// ServeHTTP implements http.Handler.
func (v *Viewer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("format") != "json" && !q.Has("room") && strings.Contains(r.Header.Get("Accept"), "text/html") {
		p := v.page
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", p.csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(p.body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if q.Has("room") {
		name := q.Get("room")
		if name == "" {
			writeViewError(w, &proto.Error{Code: proto.CodeBadRequest, Message: "room: a name is needed"})
			return
		}
		d, err := v.api.Room(r.Context(), name)
		if err != nil {
			writeViewError(w, asProtoError(err))
			return
		}
		_ = json.NewEncoder(w).Encode(d)
		return
	}
	_ = json.NewEncoder(w).Encode(v.ClusterView(r.Context()))
}

// writeViewError answers with the protocol's error object and its HTTP status.
func writeViewError(w http.ResponseWriter, pe *proto.Error) {
	w.WriteHeader(proto.HTTPStatus(pe.Code))
	_ = json.NewEncoder(w).Encode(pe)
}
