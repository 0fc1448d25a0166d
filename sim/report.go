package sim

import (
	"encoding/json"

	"github.com/cascade-sfu/cascade/relay"
	"os"
	"slices"
	"sort"
	"time"
)

// NATSMaxPayload is NATS's default max_payload (1 MiB): every control message must fit.
const NATSMaxPayload = 1 << 20

// Report is what a run shows; JSON as written by WriteJSON.
type Report struct {
	Scenario   string     `json:"scenario"`
	Nodes      int        `json:"nodes"`
	Regions    []string   `json:"regions"`
	Fanout     int        `json:"fanout"`
	Heartbeat  string     `json:"heartbeat"`
	Timeout    string     `json:"timeout"`
	VirtualSec float64    `json:"virtual_s"`
	WallSec    float64    `json:"wall_s"`
	Events     uint64     `json:"events"`
	Costs      CostReport `json:"costs"`

	Viewers   ViewerReport    `json:"viewers"`
	Load      LoadReport      `json:"load"`
	Trees     []TreeReport    `json:"trees"` // at the steady state's start
	TreesEnd  []TreeReport    `json:"trees_end"`
	Latency   []LatencyReport `json:"server_path_latency"` // per region, at the steady state's start
	Control   ControlReport   `json:"control"`
	Placement PlacementReport `json:"placement"`
	Pipes     PipeReport      `json:"pipes"`
	Failures  []FailureReport `json:"failures"`
	// Placements lists every decision, for runs of up to MaxListed decisions.
	Placements []Placement `json:"placements,omitempty"`
	Series     []Second    `json:"series"`
	Checks     []Check     `json:"checks"`
}

// CostReport states the per-node costs the run used.
type CostReport struct {
	CPUPerPacketUs float64 `json:"cpu_per_forwarded_packet_us"`
	HopLatencyMs   float64 `json:"relay_hop_latency_ms"`
	PacketsPerSec  float64 `json:"packets_per_s_per_stream"`
	Source         string  `json:"source"`
}

// ViewerReport: viewers served and refused.
type ViewerReport struct {
	Arrived           int `json:"arrived"`
	Served            int `json:"served"` // at the end
	PeakServed        int `json:"peak_served"`
	Refusals          int `json:"refusals"` // placements on a full or dead node (retried)
	Refused           int `json:"refused"`  // gave up after the retries
	PublishersRefused int `json:"publishers_refused"`
}

// LoadReport is the per-node load at the steady state's start.
type LoadReport struct {
	Viewers             Quantiles  `json:"viewers_per_node"`
	MaxOverMean         float64    `json:"max_over_mean"`
	CPUCores            Quantiles  `json:"cpu_cores_per_node"`
	PeakHerding         float64    `json:"peak_herding"` // max joins at one node in one second / mean
	PeakJoinsPerNodeSec int        `json:"peak_joins_per_node_s"`
	PerNode             []NodeLoad `json:"per_node"`
}

// NodeLoad is one node at the steady state's start.
type NodeLoad struct {
	ID       string  `json:"id"`
	Region   string  `json:"region"`
	Viewers  int     `json:"viewers"`
	RelayOut int     `json:"relay_out"`
	CPUCores float64 `json:"cpu_cores"`
}

// Quantiles of a distribution.
type Quantiles struct {
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// TreeReport is one producer's relay tree.
type TreeReport struct {
	Producer     string         `json:"producer"`
	Origin       string         `json:"origin"`
	Carriers     int            `json:"carriers"`
	OriginEgress int            `json:"origin_egress"` // relay streams the origin sends
	MaxEgress    int            `json:"max_origin_egress"`
	Crossings    map[string]int `json:"crossings_into_region"` // pipes whose child is in the region and parent is not
	MaxDepth     int            `json:"max_depth"`
	Depths       map[int]int    `json:"nodes_by_depth"`
	Detached     int            `json:"detached"` // nodes with viewers whose media does not arrive
	// Edges is the tree itself (child -> parent, by child), for trees of up to MaxListed
	// carriers: what a comparison with real nodes checks.
	Edges []relay.Edge `json:"edges,omitempty"`
}

// MaxListed bounds the trees' edges and the placements a report lists one by one.
const MaxListed = 200

// Placement is one placement decision (listed for runs of up to MaxListed decisions).
type Placement struct {
	T      float64 `json:"t"`
	Room   string  `json:"room"`
	Region string  `json:"region"`
	Entry  string  `json:"entry"` // the node the load balancer gave the client
	Node   string  `json:"node"`  // where it was placed
	Count  int     `json:"count"` // clients placed by this decision
}

// LatencyReport is the server-path latency of one region's viewers (ms): relay hops x hop cost
// plus the region delays along the path.
type LatencyReport struct {
	Region string    `json:"region"`
	Ms     Quantiles `json:"ms"`
	Hops   Quantiles `json:"hops"`
}

// ControlReport is the control traffic, counted from the messages the state machines emit.
type ControlReport struct {
	SteadyFromSec  float64   `json:"steady_from_s"`
	SteadyToSec    float64   `json:"steady_to_s"`
	SteadySent     Quantiles `json:"steady_sent_per_node_s"`
	SteadyReceived Quantiles `json:"steady_received_per_node_s"`
	// Aggregators are the nodes aggregating their region's heartbeats at the steady state's end
	// (primary and backup of each region, cluster.Aggregator): they receive their region's
	// heartbeats on top of every region's digest, so their load is shown apart from the others'.
	Aggregators        int           `json:"aggregators"`
	AggregatorSent     Quantiles     `json:"steady_aggregator_sent_per_node_s"`
	AggregatorReceived Quantiles     `json:"steady_aggregator_received_per_node_s"`
	OtherSent          Quantiles     `json:"steady_other_sent_per_node_s"`
	OtherReceived      Quantiles     `json:"steady_other_received_per_node_s"`
	ChurnSentMax       uint64        `json:"churn_max_sent_per_node_s"`
	ChurnReceivedMax   uint64        `json:"churn_max_received_per_node_s"`
	ByType             []TypeTraffic `json:"by_type"`
	NATSMaxPayload     int           `json:"nats_max_payload"`
}

// TypeTraffic is one message type's totals over the run.
type TypeTraffic struct {
	Type     string `json:"type"`
	Bytes    int    `json:"bytes"` // one message, sealed and signed
	Sent     uint64 `json:"sent"`
	Received uint64 `json:"received"`
	Gateway  uint64 `json:"gateway_crossings"`
}

// PlacementReport is the real placement function's decision time (the CPU time of the
// simulator's thread around the call, on Linux: what a decision costs on a core of its own).
type PlacementReport struct {
	Decisions          int     `json:"decisions"`
	Nodes              int     `json:"nodes"`
	P50Ms              float64 `json:"p50_ms"`
	P99Ms              float64 `json:"p99_ms"`
	MaxMs              float64 `json:"max_ms"`
	ViewersPerDecision int     `json:"viewers_per_decision"`
}

// PipeReport counts the pipe requests.
type PipeReport struct {
	Asks    int `json:"asks"`
	Refused int `json:"refused"`
	Retries int `json:"retries"`
	Ranked  int `json:"parents_ranked"`
	// HubWaits counts the looks of a node that is not its region's hub for a producer, waiting
	// for the hub to carry it into the region (relay.HubDelay).
	HubWaits int `json:"hub_waits"`
	// SetupMs is the time from a node's demand for a producer to its pipe in (the manager has
	// at most relay.MaxSetups set-ups under way: a node opening many rooms at once queues the
	// rest).
	SetupMs Quantiles `json:"demand_to_pipe_ms"`
	// MaxQueue is the most producers one manager had wanted at once: queued or under way.
	MaxQueue int `json:"max_manager_queue"`
}

// FailureReport is one injected failure and its repair.
type FailureReport struct {
	Kind        string  `json:"kind"`
	Target      string  `json:"target"`
	Node        string  `json:"node,omitempty"`
	AtSec       float64 `json:"at_s"`
	HealedSec   float64 `json:"healed_s,omitempty"`
	Orphans     int     `json:"orphans"` // the killed node's children (any producer)
	Subtree     int     `json:"subtree"` // nodes below it, summed over producers
	DetectedSec float64 `json:"detected_after_s"`
	// DetectedAllSec is when the last node dropped the killed one.
	DetectedAllSec float64 `json:"detected_by_all_after_s,omitempty"`
	Dropped        int     `json:"membership_drops,omitempty"`
	// LiveDropped counts a kill's wrong drops: live nodes some node dropped from its membership
	// within the timeout and two intervals of the kill (a killed aggregator must cost none).
	LiveDropped int            `json:"live_dropped"`
	Repaired    bool           `json:"repaired"`
	RepairSec   float64        `json:"repair_s"`                  // kill: from the kill; partition: from the heal
	Crossings   map[string]int `json:"crossings_after,omitempty"` // first producer's pipes into each region, once repaired
}

// Second is one second of the run.
type Second struct {
	T                  float64 `json:"t"`
	Viewers            int     `json:"viewers"`
	Joins              int     `json:"joins"`
	Refused            int     `json:"refused"`
	Reconnecting       int     `json:"reconnecting"`
	Sent               uint64  `json:"sent"`
	Received           uint64  `json:"received"`
	MaxSentPerNode     uint64  `json:"max_sent_per_node"`
	MaxReceivedPerNode uint64  `json:"max_received_per_node"`
	GatewayTotal       uint64  `json:"gateway_total"`
	MaxJoinsPerNode    int     `json:"max_joins_per_node"`
	Herding            float64 `json:"herding"`
	MaxLoad            float64 `json:"max_load"`
	NodesWithoutMedia  int     `json:"nodes_without_media"`
}

// Check is one property of the "Done means", as this run measured it.
type Check struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	OK    bool   `json:"ok"`
}

// OK tells whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// quantiles of vs (unsorted; sorted in place).
func quantiles(vs []float64) Quantiles {
	if len(vs) == 0 {
		return Quantiles{}
	}
	sort.Float64s(vs)
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	at := func(q float64) float64 { return vs[min(len(vs)-1, int(q*float64(len(vs))))] }
	return Quantiles{Min: vs[0], P50: at(0.5), P99: at(0.99), Max: vs[len(vs)-1], Mean: sum / float64(len(vs))}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sortedTypes lists the traffic by type, most received first.
func sortedTypes(m map[string]*TypeTraffic) []TypeTraffic {
	var out []TypeTraffic
	for _, t := range m {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b TypeTraffic) int {
		switch {
		case a.Received != b.Received:
			if a.Received > b.Received {
				return -1
			}
			return 1
		}
		if a.Type < b.Type {
			return -1
		}
		return 1
	})
	return out
}
