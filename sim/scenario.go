package sim

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Scenarios are the committed scenarios, so `cascade sim --scenario townhall-1m.yaml` runs from
// any directory.
//
//go:embed scenarios/*.yaml
var Scenarios embed.FS

// Scenario is a simulated deployment and what happens to it (the YAML a run reads). Durations
// are Go durations ("1s", "250ms").
type Scenario struct {
	// Name names the run in its report.
	Name string `yaml:"name"`
	// Duration is the virtual time simulated.
	Duration time.Duration `yaml:"duration"`
	// Seed makes the run reproducible: the same scenario and seed give the same report.
	Seed int64 `yaml:"seed"`
	// Regions are the regions, their nodes and their load balancers.
	Regions []Region `yaml:"regions"`
	// Delays are the one-way delays between regions, keyed "a/b" (symmetric).
	Delays map[string]time.Duration `yaml:"delays"`
	// IntraRegionDelay is the one-way delay between two nodes of one region (default 1ms).
	IntraRegionDelay time.Duration `yaml:"intra_region_delay"`
	// Fanout is K: a node relays a producer to at most K nodes (default relay.DefaultFanout).
	Fanout int `yaml:"fanout"`
	// Heartbeat and Timeout are the membership's (defaults cluster.DefaultHeartbeat and
	// cluster.DefaultTimeout).
	Heartbeat time.Duration `yaml:"heartbeat"`
	Timeout   time.Duration `yaml:"timeout"`
	// Rooms are the room groups and who joins them.
	Rooms []RoomGroup `yaml:"rooms"`
	// Failures are injected at their times.
	Failures []Failure `yaml:"failures"`
	// Costs are the per-node costs (defaults: BENCHMARKS.md's figures).
	Costs Costs `yaml:"costs"`
	// ViewersPerDecision is how many viewers of one region arrive at one entry node together
	// and are placed by one (real) placement decision (default 1). A town hall of a million
	// uses a few: at 500 nodes a decision costs ~0.3 ms, and Place's own hysteresis keeps up
	// to 20 consecutive joins on one node anyway.
	ViewersPerDecision int `yaml:"viewers_per_decision"`
	// PlacementSpread is the placement's Spread (cluster.PlacementInput.Spread), in consumers:
	// 0 keeps Cascade's default (the nodes carrying the room always first).
	PlacementSpread int64 `yaml:"placement_spread"`
	// PlacementAccounting is the placer's optimistic accounting (cluster.Pending and
	// PlaceCounted: an entry node counts its recent redirects against their targets until a
	// load taken after them is heard, and during a storm counts them times its region's nodes
	// and compares itself with two random nodes of the region). On by default, as in Cascade;
	// off (false) shows the join storm herding onto the node that looked emptiest a heartbeat
	// ago.
	PlacementAccounting *bool `yaml:"placement_accounting"`

	// ReconnectAfter is how long the viewers of a killed node take to notice and join again
	// (default 2s); JoinRetries how often a refused viewer tries again, a second apart
	// (default 3).
	ReconnectAfter time.Duration `yaml:"reconnect_after"`
	JoinRetries    *int          `yaml:"join_retries"`
	// SteadyFrom is when the steady state starts (for the control-traffic figures); default:
	// two heartbeat intervals after the last arrival ends.
	SteadyFrom time.Duration `yaml:"steady_from"`
}

// Region is one region's nodes.
type Region struct {
	Name string `yaml:"name"`
	// Nodes is how many nodes the region has; Capacity how many viewers one serves (its CPU
	// budget; the real node has no such limit: a viewer placed on a full node counts as
	// refused).
	Nodes    int `yaml:"nodes"`
	Capacity int `yaml:"capacity"`
}

// RoomGroup is Count alike rooms: each has Publishers publishers (in PublisherRegions, round
// robin) with Producers producers each, and the viewers of Arrivals, spread over the rooms
// round robin.
type RoomGroup struct {
	Name             string        `yaml:"name"`
	Count            int           `yaml:"count"`
	Publishers       int           `yaml:"publishers"`
	PublisherRegions []string      `yaml:"publisher_regions"`
	Producers        int           `yaml:"producers"`
	PublishAt        time.Duration `yaml:"publish_at"`
	Arrivals         []Arrival     `yaml:"arrivals"`
}

// Arrival is a stream of viewers of one region: PerSec a second from Start to End (a join
// storm is a short one with a high rate).
type Arrival struct {
	Region string        `yaml:"region"`
	Start  time.Duration `yaml:"start"`
	End    time.Duration `yaml:"end"`
	PerSec float64       `yaml:"per_sec"`
}

// Failure is one injected failure. Kill names a node: an id ("us-east-003"), "mid-tree" (a
// node two or more hops from the origin, with children, in the first room's first producer's
// tree), "hub:REGION" (the node of REGION that gets that producer from another region) or
// "aggregator:REGION" (the primary aggregator of REGION's heartbeats, cluster.Aggregator).
// Partition cuts a region off the others (NATS and relay alike) for For.
type Failure struct {
	At        time.Duration `yaml:"at"`
	Kill      string        `yaml:"kill"`
	Partition string        `yaml:"partition"`
	For       time.Duration `yaml:"for"`
}

// Costs are what a node spends: CPU per forwarded packet, one-way latency a relay hop adds,
// and the packets a second of one stream (one producer to one viewer, or one relay pipe).
type Costs struct {
	CPUPerPacket  time.Duration `yaml:"cpu_per_packet"`
	HopLatency    time.Duration `yaml:"hop_latency"`
	PacketsPerSec float64       `yaml:"packets_per_sec"`
}

// Defaults from BENCHMARKS.md: 10.2 µs of CPU per forwarded packet (1 -> 200, cascade), 0.4
// ms per relay hop (p50 of the relay chain run), and 108.5 packets a second per stream: the
// mean of the benchmark's video (~167/s) and an Opus audio stream (~50/s), a publisher's two
// producers.
const (
	DefaultCPUPerPacket  = 10200 * time.Nanosecond
	DefaultHopLatency    = 400 * time.Microsecond
	DefaultPacketsPerSec = 108.5
)

// ErrScenario is a scenario that does not hold.
var ErrScenario = errors.New("sim: bad scenario")

// LoadScenario reads a scenario from path, or, when no such file exists, the committed
// scenario of that name.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		var embedErr error
		if data, embedErr = Scenarios.ReadFile("scenarios/" + filepath.Base(path)); embedErr == nil {
			err = nil
		} else {
			err = fmt.Errorf("%w (and no committed scenario of that name: %s)", err, strings.Join(ListScenarios(), ", "))
		}
	}
	if err != nil {
		return nil, err
	}
	return ParseScenario(data)
}

// ParseScenario decodes a scenario strictly (an unknown key is an error) and fills defaults.
func ParseScenario(data []byte) (*Scenario, error) {
	var sc Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.Strict())
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrScenario, yaml.FormatError(err, false, true))
	}
	if err := sc.fill(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// ListScenarios names the committed scenarios.
func ListScenarios() []string {
	ents, _ := Scenarios.ReadDir("scenarios")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// delay is the one-way delay between regions a and b.
func (sc *Scenario) delay(a, b string) time.Duration {
	if a == b {
		return sc.IntraRegionDelay
	}
	if d, ok := sc.Delays[a+"/"+b]; ok {
		return d
	}
	return sc.Delays[b+"/"+a]
}

func (sc *Scenario) fill() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrScenario}, a...)...)
	}
	if sc.Name == "" {
		sc.Name = "scenario"
	}
	if sc.Duration <= 0 {
		return bad("duration must be set")
	}
	if sc.IntraRegionDelay == 0 {
		sc.IntraRegionDelay = time.Millisecond
	}
	if sc.Fanout == 0 {
		sc.Fanout = 3
	}
	if sc.Heartbeat == 0 {
		sc.Heartbeat = time.Second
	}
	if sc.Timeout == 0 {
		sc.Timeout = 3 * sc.Heartbeat
	}
	if sc.Timeout < 2*sc.Heartbeat {
		return bad("timeout %v must span two heartbeats (%v)", sc.Timeout, sc.Heartbeat)
	}
	if sc.ViewersPerDecision <= 0 {
		sc.ViewersPerDecision = 1
	}
	if sc.ReconnectAfter == 0 {
		sc.ReconnectAfter = 2 * time.Second
	}
	if sc.PlacementAccounting == nil {
		on := true
		sc.PlacementAccounting = &on
	}
	if sc.JoinRetries == nil {
		n := 3
		sc.JoinRetries = &n
	}
	if sc.Costs.CPUPerPacket == 0 {
		sc.Costs.CPUPerPacket = DefaultCPUPerPacket
	}
	if sc.Costs.HopLatency == 0 {
		sc.Costs.HopLatency = DefaultHopLatency
	}
	if sc.Costs.PacketsPerSec == 0 {
		sc.Costs.PacketsPerSec = DefaultPacketsPerSec
	}
	regions := map[string]bool{}
	if len(sc.Regions) == 0 {
		return bad("no regions")
	}
	for _, r := range sc.Regions {
		if r.Name == "" || strings.ContainsAny(r.Name, "/ ") || regions[r.Name] {
			return bad("region name %q: empty, repeated or with '/'", r.Name)
		}
		if r.Nodes <= 0 || r.Capacity <= 0 {
			return bad("region %s: nodes and capacity must be positive", r.Name)
		}
		regions[r.Name] = true
	}
	for k := range sc.Delays {
		a, b, ok := strings.Cut(k, "/")
		if !ok || !regions[a] || !regions[b] {
			return bad("delay %q: not two known regions a/b", k)
		}
	}
	for _, a := range sc.Regions {
		for _, b := range sc.Regions {
			if a.Name != b.Name && sc.delay(a.Name, b.Name) == 0 {
				return bad("no delay between %s and %s", a.Name, b.Name)
			}
		}
	}
	lastArrival := time.Duration(0)
	for i := range sc.Rooms {
		g := &sc.Rooms[i]
		if g.Name == "" {
			g.Name = fmt.Sprintf("room%d", i)
		}
		if g.Count <= 0 {
			g.Count = 1
		}
		if g.Producers <= 0 {
			g.Producers = 2
		}
		if g.Publishers > 0 && len(g.PublisherRegions) == 0 {
			g.PublisherRegions = []string{sc.Regions[0].Name}
		}
		for _, r := range g.PublisherRegions {
			if !regions[r] {
				return bad("room %s: unknown publisher region %q", g.Name, r)
			}
		}
		for _, a := range g.Arrivals {
			if !regions[a.Region] {
				return bad("room %s: unknown arrival region %q", g.Name, a.Region)
			}
			if a.End <= a.Start || a.PerSec <= 0 {
				return bad("room %s: arrival in %s needs end > start and per_sec > 0", g.Name, a.Region)
			}
			lastArrival = max(lastArrival, a.End)
		}
	}
	for _, f := range sc.Failures {
		switch {
		case f.Kill != "" && f.Partition != "":
			return bad("a failure kills or partitions, not both")
		case f.Partition != "" && (!regions[f.Partition] || f.For <= 0):
			return bad("partition %q: unknown region or no duration", f.Partition)
		case f.Kill == "" && f.Partition == "":
			return bad("a failure needs kill or partition")
		}
	}
	if sc.SteadyFrom == 0 {
		sc.SteadyFrom = lastArrival + 2*sc.Heartbeat
	}
	return nil
}
