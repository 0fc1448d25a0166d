package cluster

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// View is the cluster as this node sees it: GET /cluster.
type View struct {
	Node  string       `json:"node"`
	Nodes []node.Stats `json:"nodes"`
	Rooms []RoomView   `json:"rooms"`
	Links []string     `json:"relay_links"`
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

// Viewer serves /cluster: the page for browsers, JSON otherwise (or with ?format=json).
type Viewer struct {
	n       *node.Node
	members *Membership
	state   *RoomState
	pipes   *relay.Pipes
}

// NewViewer returns the /cluster handler of the cluster's node.
func NewViewer(c *Cluster) *Viewer {
	return &Viewer{n: c.n, members: c.members, state: c.state, pipes: c.pipes}
}

// View reports the cluster as this node sees it.
func (v *Viewer) View() View {
	out := View{Node: v.n.ID(), Nodes: append([]node.Stats{v.n.Stats()}, v.members.Peers()...), Links: v.pipes.Transport().Links()}
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

//go:embed cluster.html
var page []byte

// ServeHTTP implements http.Handler.
func (v *Viewer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("format") != "json" && strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v.View())
}
