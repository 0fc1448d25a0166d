package sim

// Trees are the relay trees as the run left them, by producer id: each carrying node but the
// origin and its parent (node ids). internal/reallab compares them with a real run's.
func (s *Sim) Trees() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, r := range s.rooms {
		for _, p := range r.producers {
			t := map[string]string{}
			for child, parent := range p.edges {
				t[child.id] = parent.id
			}
			out[p.id] = t
		}
	}
	return out
}

// NodeViewers is how many participants each live node holds as the run ends (viewers, and the
// publishers on their origin).
func (s *Sim) NodeViewers() map[string]int {
	out := map[string]int{}
	for _, n := range s.nodes {
		if n.alive {
			out[n.id] = n.viewers
		}
	}
	return out
}
