package cluster

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cascade-sfu/cascade/node"
)

// BenchmarkControlSecond is what one second of steady-state membership traffic costs a node
// that does not aggregate, in a cluster of 501 nodes in 3 regions: all-to-all, 500 heartbeats
// (each opened, its signature verified, its stats decoded, recorded); aggregated, 3 digests of
// 167 entries (each opened and verified once, decoded, every entry's cert checked against the
// voucher cache and recorded). Compare the two in one run: go test -run - -bench ControlSecond
// ./cluster/
func BenchmarkControlSecond(b *testing.B) {
	const regions, perRegion = 3, 167
	clock := fixedTime{t0}
	st := func(id, region string) node.Stats {
		s := node.Stats{ID: id, Region: region, HTTPURL: "https://" + id + ".example.com", RelayAddr: "10.1.0.17:7882",
			Rooms: 3, Participants: 2000, Consumers: 4000, Producers: 2, UptimeSec: 86400}
		for i := range 2 {
			s.Workers = append(s.Workers, node.WorkerStats{Index: i, UDP: fmt.Sprintf("10.1.0.17:%d", 50000+i), Routers: 2,
				Consumers: 2000, Packets: 1 << 40, Bytes: 1 << 50, UDP4: 1000})
		}
		return s
	}
	var beats, digests [][]byte
	for r := range regions {
		region := fmt.Sprintf("r%d", r)
		var entries []DigestEntry
		for i := range perRegion {
			id := fmt.Sprintf("%s-%03d", region, i)
			k := mustKeys(b, id, secretOld)
			raw, err := NewSigningStamper(k, clock).Seal(typeHeartbeat, st(id, region))
			if err != nil {
				b.Fatal(err)
			}
			beats = append(beats, raw)
			cert := k.Cert()
			entries = append(entries, DigestEntry{Inc: cert.Inc, AgeMs: int64(i % 1000), Stats: st(id, region), Cert: &cert})
		}
		agg := mustKeys(b, entries[0].Stats.ID, secretOld)
		for _, d := range SplitDigest(region, entries[0], entries[1:], DigestBudget) {
			raw, err := NewSigningStamper(agg, clock).Seal(typeDigest, d)
			if err != nil {
				b.Fatal(err)
			}
			digests = append(digests, raw)
		}
	}
	b.Run(fmt.Sprintf("heartbeats-%d", len(beats)), func(b *testing.B) {
		v := NewVerifier(secretOld, clock) // certs cached after the first loop, as in a running node
		for b.Loop() {
			m := NewMembership("self", time.Second, 3*time.Second)
			for _, raw := range beats {
				e, err := Open(raw)
				if err != nil || v.Verify(&e) != nil {
					b.Fatal("refused")
				}
				var s node.Stats
				if json.Unmarshal(e.Body, &s) != nil {
					b.Fatal("body")
				}
				m.Heartbeat(e.Inc, s, t0)
			}
		}
	})
	b.Run(fmt.Sprintf("digests-%d", len(digests)), func(b *testing.B) {
		v := NewVerifier(secretOld, clock)
		first := true
		for b.Loop() {
			m := NewMembership("self", time.Second, 3*time.Second)
			for _, raw := range digests {
				e, err := Open(raw)
				if err != nil || v.Verify(&e) != nil {
					b.Fatal("refused")
				}
				var d Digest
				if json.Unmarshal(e.Body, &d) != nil {
					b.Fatal("body")
				}
				if _, err := ApplyDigest(m, e.Node, d, t0, func(de DigestEntry) bool { _, err := v.vouched(de.Cert); return err == nil }); err != nil {
					b.Fatal(err)
				}
			}
			if first && m.Len() != regions*perRegion {
				b.Fatalf("%d peers", m.Len())
			}
			first = false
		}
	})
}

type fixedTime struct{ t time.Time }

func (c fixedTime) Now() time.Time { return c.t }
