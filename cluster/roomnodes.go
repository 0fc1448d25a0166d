package cluster

import "sort"

// RoomNodes implements relay.RoomNodes: the other nodes known here to have participants in a
// room open here (from its room state), sorted. The pipe manager picks a region's hub for a
// producer among them (relay.HubDelay).
func (c *Cluster) RoomNodes(room string) []string {
	counts := c.state.Counts(room)
	out := make([]string, 0, len(counts))
	for id, n := range counts {
		if n > 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
