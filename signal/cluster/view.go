package cluster

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/cascade-sfu/cascade/node"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts what the registry and placement decide, and relayed packets no pipe takes.
type metrics struct {
	placementLocal, placementRedirect atomic.Uint64
	unknownSSRC                       atomic.Uint64
}

// View is the cluster as this node sees it: GET /cluster.
type View struct {
	Node  string       `json:"node"`
	Nodes []node.Stats `json:"nodes"`
	Rooms []RoomView   `json:"rooms"`
	Links []string     `json:"relay_links"`
}

// RoomView is one room open on this node.
type RoomView struct {
	Name         string         `json:"name"`
	Participants int            `json:"participants"`
	Producers    []ProducerView `json:"producers"`
}

// ProducerView is a producer and its relay tree.
type ProducerView struct {
	node.ProducerInfo
	// Tree lists the nodes carrying the producer and the node each gets it from.
	Tree []Edge `json:"tree"`
}

// Edge is one relay hop.
type Edge struct {
	Node   string `json:"node"`
	Parent string `json:"parent"`
}

// View reports the cluster as this node sees it.
func (c *Cluster) View() View {
	v := View{Node: c.me, Nodes: append([]node.Stats{c.n.Stats()}, c.Peers()...), Links: c.relay.Links()}
	sort.Slice(v.Nodes[1:], func(i, j int) bool { return v.Nodes[1+i].ID < v.Nodes[1+j].ID })
	sort.Strings(v.Links)
	for _, r := range c.n.Rooms() {
		rv := RoomView{Name: r.Name(), Participants: len(r.Participants())}
		c.mu.Lock()
		s := c.rooms[r.Name()]
		c.mu.Unlock()
		for _, p := range r.Producers() {
			pv := ProducerView{ProducerInfo: p}
			if pv.Origin == "" {
				pv.Origin = c.me
			}
			if s != nil {
				c.mu.Lock()
				for child, parent := range s.tree[p.ID] {
					pv.Tree = append(pv.Tree, Edge{Node: child, Parent: parent})
				}
				c.mu.Unlock()
			}
			sort.Slice(pv.Tree, func(i, j int) bool { return pv.Tree[i].Node < pv.Tree[j].Node })
			rv.Producers = append(rv.Producers, pv)
		}
		v.Rooms = append(v.Rooms, rv)
	}
	sort.Slice(v.Rooms, func(i, j int) bool { return v.Rooms[i].Name < v.Rooms[j].Name })
	return v
}

//go:embed cluster.html
var page []byte

// ServeHTTP serves /cluster: the page for browsers, JSON otherwise (or with ?format=json).
func (c *Cluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("format") != "json" && strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c.View())
}

var (
	descNodes   = prometheus.NewDesc("cascade_cluster_nodes", "Live nodes in the cluster, this one included.", nil, nil)
	descLinks   = prometheus.NewDesc("cascade_relay_links", "Relay links to other nodes.", nil, nil)
	descPipes   = prometheus.NewDesc("cascade_relay_pipes", "Producers piped over relay links, by direction.", []string{"direction"}, nil)
	descPackets = prometheus.NewDesc("cascade_relay_packets_total", "Relayed RTP packets, by direction.", []string{"direction"}, nil)
	descBytes   = prometheus.NewDesc("cascade_relay_bytes_total", "Relayed bytes, by direction.", []string{"direction"}, nil)
	descDropped = prometheus.NewDesc("cascade_relay_dropped_total", "Relay datagrams dropped, by reason (unknown_source, auth, malformed, unknown_ssrc: no pipe here, as after an unpipe).", []string{"reason"}, nil)
	descPlaced  = prometheus.NewDesc("cascade_placement_decisions_total", "Join placement decisions, by result (local, redirect).", []string{"result"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Cluster) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descLinks, descPipes, descPackets, descBytes, descDropped, descPlaced} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Cluster) Collect(ch chan<- prometheus.Metric) {
	t := c.relay
	c.mu.Lock()
	nodes, in, out := len(c.peers)+1, len(c.in), len(c.out)
	c.mu.Unlock()
	g, k := prometheus.GaugeValue, prometheus.CounterValue
	ch <- prometheus.MustNewConstMetric(descNodes, g, float64(nodes))
	ch <- prometheus.MustNewConstMetric(descLinks, g, float64(len(t.Links())))
	ch <- prometheus.MustNewConstMetric(descPipes, g, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(descPipes, g, float64(out), "out")
	ch <- prometheus.MustNewConstMetric(descPackets, k, float64(t.PacketsIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descPackets, k, float64(t.PacketsOut.Load()), "out")
	ch <- prometheus.MustNewConstMetric(descBytes, k, float64(t.BytesIn.Load()), "in")
	ch <- prometheus.MustNewConstMetric(descBytes, k, float64(t.BytesOut.Load()), "out")
	ch <- prometheus.MustNewConstMetric(descDropped, k, float64(t.DroppedUnknown.Load()), "unknown_source")
	ch <- prometheus.MustNewConstMetric(descDropped, k, float64(t.DroppedAuth.Load()), "auth")
	ch <- prometheus.MustNewConstMetric(descDropped, k, float64(t.DroppedMalformed.Load()), "malformed")
	ch <- prometheus.MustNewConstMetric(descDropped, k, float64(c.metrics.unknownSSRC.Load()), "unknown_ssrc")
	ch <- prometheus.MustNewConstMetric(descPlaced, k, float64(c.metrics.placementLocal.Load()), "local")
	ch <- prometheus.MustNewConstMetric(descPlaced, k, float64(c.metrics.placementRedirect.Load()), "redirect")
}
