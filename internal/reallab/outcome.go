package reallab

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/relay"
)

// Outcome is what a scenario came to: predicted (Expect, the simulator) or measured (Cluster).
// A nil field is one its source does not know (the simulator counts viewers per node, it does
// not follow each viewer); Diff compares the fields both sides know.
type Outcome struct {
	// Placement is the node each viewer landed on, in join order.
	Placement []string `json:"placement,omitempty"`
	// Viewers counts the viewers on each node that has any.
	Viewers map[string]int `json:"viewers"`
	// Tree is the publisher's producers' relay tree (every track has the same): each carrying
	// node but the origin, and its parent.
	Tree relay.Tree `json:"tree"`
	// Crossings counts the tree's edges between two regions: how often the media crosses a
	// region boundary.
	Crossings int `json:"crossings"`
	// Consumers is each node's load once every viewer joined: its consumers, a viewer's
	// tracks and a relay child's (placement's load figure).
	Consumers map[string]int64 `json:"consumers,omitempty"`
	// PathMs is the server-path latency to each node with viewers, in ms (0 for the origin).
	PathMs map[string]float64 `json:"path_ms,omitempty"`
	// RegionPathMs is the median server-path latency of each region's viewers, in ms.
	RegionPathMs map[string]float64 `json:"region_path_ms"`
}

// finish fills Viewers from Placement and RegionPathMs from PathMs, when they are known.
func (o *Outcome) finish(s Scenario) {
	if o.Placement != nil {
		o.Viewers = map[string]int{}
		for _, id := range o.Placement {
			o.Viewers[id]++
		}
	}
	if o.Placement != nil && o.PathMs != nil {
		per := map[string][]float64{}
		for i, id := range o.Placement {
			if ms, ok := o.PathMs[id]; ok {
				r := s.Viewers[i].Region
				per[r] = append(per[r], ms)
			}
		}
		o.RegionPathMs = map[string]float64{}
		for r, v := range per {
			o.RegionPathMs[r] = median(v)
		}
	}
}

// crossings counts t's edges whose ends are in different regions of s.
func crossings(s Scenario, t relay.Tree) int {
	n := 0
	for child, parent := range t {
		if s.Region(child) != s.Region(parent) {
			n++
		}
	}
	return n
}

// String shows the outcome on a few lines.
func (o Outcome) String() string {
	var b strings.Builder
	if o.Placement != nil {
		fmt.Fprintf(&b, "placement %v\n", o.Placement)
	}
	fmt.Fprintf(&b, "viewers %s\ntree", show(o.Viewers, "%d"))
	for _, c := range sortedKeys(o.Tree) {
		fmt.Fprintf(&b, " %s<-%s", c, o.Tree[c])
	}
	fmt.Fprintf(&b, "\ncrossings %d", o.Crossings)
	if o.Consumers != nil {
		fmt.Fprintf(&b, "\nconsumers %s", show(o.Consumers, "%d"))
	}
	if o.PathMs != nil {
		fmt.Fprintf(&b, "\nserver path per node ms %s", show(o.PathMs, "%.1f"))
	}
	fmt.Fprintf(&b, "\nserver path per region ms %s", show(o.RegionPathMs, "%.1f"))
	return b.String()
}

func show[V any](m map[string]V, format string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s "+format, k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Tolerance of a server-path comparison: a path agrees when it is within Rel of the other
// (relative), or within AbsMs (for the paths inside one region, a few tenths of a ms, where no
// relative figure is measurable).
type Tolerance struct {
	Rel   float64
	AbsMs float64
}

// DefaultTolerance is issue 17's: within 20 %, or 2 ms.
var DefaultTolerance = Tolerance{Rel: 0.2, AbsMs: 2}

// Diff lists how got differs from want, in what both know: another node for a viewer, another
// count of viewers on a node, another parent for a node, another number of crossings, another
// load, a server path out of tol. Empty: they agree.
func Diff(want, got Outcome, tol Tolerance) []string {
	var out []string
	if want.Placement != nil && got.Placement != nil {
		if len(want.Placement) != len(got.Placement) {
			out = append(out, fmt.Sprintf("%d viewers placed, want %d", len(got.Placement), len(want.Placement)))
		}
		for i := range min(len(want.Placement), len(got.Placement)) {
			if want.Placement[i] != got.Placement[i] {
				out = append(out, fmt.Sprintf("viewer %d on %s, want %s", i, got.Placement[i], want.Placement[i]))
			}
		}
	}
	for _, id := range sortedKeys(union(want.Viewers, got.Viewers)) {
		if want.Viewers[id] != got.Viewers[id] {
			out = append(out, fmt.Sprintf("%d viewers on %s, want %d", got.Viewers[id], id, want.Viewers[id]))
		}
	}
	for _, c := range sortedKeys(union(want.Tree, got.Tree)) {
		if want.Tree[c] != got.Tree[c] {
			out = append(out, fmt.Sprintf("%s gets the producer from %q, want %q", c, got.Tree[c], want.Tree[c]))
		}
	}
	if want.Crossings != got.Crossings {
		out = append(out, fmt.Sprintf("%d region crossings, want %d", got.Crossings, want.Crossings))
	}
	if want.Consumers != nil && got.Consumers != nil {
		for _, id := range sortedKeys(union(want.Consumers, got.Consumers)) {
			if want.Consumers[id] != got.Consumers[id] {
				out = append(out, fmt.Sprintf("%s has %d consumers, want %d", id, got.Consumers[id], want.Consumers[id]))
			}
		}
	}
	if want.PathMs != nil && got.PathMs != nil {
		out = append(out, diffPaths("node", want.PathMs, got.PathMs, tol)...)
	}
	return append(out, diffPaths("region", want.RegionPathMs, got.RegionPathMs, tol)...)
}

// diffPaths compares two sets of server paths (per node or per region, what is) within tol.
func diffPaths(what string, want, got map[string]float64, tol Tolerance) []string {
	var out []string
	for _, id := range sortedKeys(union(want, got)) {
		w, okw := want[id]
		g, okg := got[id]
		switch {
		case !okw || !okg:
			out = append(out, fmt.Sprintf("server path to %s %s: %.1f ms (known: %t), want %.1f ms (known: %t)", what, id, g, okg, w, okw))
		case math.Abs(g-w) > max(tol.AbsMs, tol.Rel*w):
			out = append(out, fmt.Sprintf("server path to %s %s: %.1f ms, want %.1f ms within %.0f %% or %.1f ms", what, id, g, w, tol.Rel*100, tol.AbsMs))
		}
	}
	return out
}

func union[V any](a, b map[string]V) map[string]V {
	out := make(map[string]V, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
