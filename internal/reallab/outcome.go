package reallab

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/cascade-sfu/cascade/relay"
)

// Outcome is what a scenario came to: predicted (Expect, a simulator) or measured (Cluster).
type Outcome struct {
	// Placement is the node each viewer landed on, in join order.
	Placement []string `json:"placement"`
	// Tree is the publisher's producer's relay tree: each carrying node but the origin, and
	// its parent.
	Tree relay.Tree `json:"tree"`
	// Crossings counts the tree's edges between two regions: how often the media crosses a
	// region boundary.
	Crossings int `json:"crossings"`
	// Consumers is each node's load once every viewer joined: its consumers, a viewer's
	// tracks and a relay child's (placement's load figure).
	Consumers map[string]int64 `json:"consumers"`
	// PathMs is the server-path latency to each carrying node, in ms (0 for the origin).
	PathMs map[string]float64 `json:"path_ms"`
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

// String shows the outcome on a few lines: placement, tree, crossings, server paths.
func (o Outcome) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "placement %v\ntree", o.Placement)
	for _, c := range sortedKeys(o.Tree) {
		fmt.Fprintf(&b, " %s<-%s", c, o.Tree[c])
	}
	fmt.Fprintf(&b, "\ncrossings %d\nconsumers", o.Crossings)
	for _, id := range sortedKeys(o.Consumers) {
		fmt.Fprintf(&b, " %s %d", id, o.Consumers[id])
	}
	fmt.Fprintf(&b, "\nserver path ms")
	for _, id := range sortedKeys(o.PathMs) {
		fmt.Fprintf(&b, " %s %.1f", id, o.PathMs[id])
	}
	return b.String()
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

// Diff lists how got differs from want: another node for a viewer, another parent for a node,
// another number of crossings, a server path out of tol. Empty: they agree.
func Diff(want, got Outcome, tol Tolerance) []string {
	var out []string
	if len(want.Placement) != len(got.Placement) {
		out = append(out, fmt.Sprintf("%d viewers placed, want %d", len(got.Placement), len(want.Placement)))
	}
	for i := range min(len(want.Placement), len(got.Placement)) {
		if want.Placement[i] != got.Placement[i] {
			out = append(out, fmt.Sprintf("viewer %d on %s, want %s", i, got.Placement[i], want.Placement[i]))
		}
	}
	for _, c := range sortedKeys(union(want.Tree, got.Tree)) {
		if want.Tree[c] != got.Tree[c] {
			out = append(out, fmt.Sprintf("%s gets the producer from %q, want %q", c, got.Tree[c], want.Tree[c]))
		}
	}
	for _, id := range sortedKeys(union(want.Consumers, got.Consumers)) {
		if want.Consumers[id] != got.Consumers[id] {
			out = append(out, fmt.Sprintf("%s has %d consumers, want %d", id, got.Consumers[id], want.Consumers[id]))
		}
	}
	if want.Crossings != got.Crossings {
		out = append(out, fmt.Sprintf("%d region crossings, want %d", got.Crossings, want.Crossings))
	}
	for _, id := range sortedKeys(union(want.PathMs, got.PathMs)) {
		w, okw := want.PathMs[id]
		g, okg := got.PathMs[id]
		switch {
		case !okw || !okg:
			out = append(out, fmt.Sprintf("server path to %s: %.1f ms (measured: %t), want %.1f ms (known: %t)", id, g, okg, w, okw))
		case math.Abs(g-w) > max(tol.AbsMs, tol.Rel*w):
			out = append(out, fmt.Sprintf("server path to %s: %.1f ms, want %.1f ms within %.0f %% or %.1f ms", id, g, w, tol.Rel*100, tol.AbsMs))
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

// ViewersPerNode counts the viewers placed on each node.
func (o Outcome) ViewersPerNode() map[string]int {
	out := map[string]int{}
	for _, id := range o.Placement {
		out[id]++
	}
	return out
}
