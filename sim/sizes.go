package sim

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cascade-sfu/cascade/cluster"
	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/relay"
)

// fixedClock is a Clock at one instant (sizes do not depend on the time).
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// messageSizes seals one message of each type the simulator counts the way the cluster does
// (a signed envelope carrying the sender's cert; pipe requests and replies sealed to the
// receiver) and returns its size in bytes, and a node's cert. st is a representative node's
// heartbeat; a digest is that of a region of regionNodes such nodes (its largest part, when the
// cluster splits it under cluster.DigestBudget).
func messageSizes(st node.Stats, regionNodes int) (map[string]int, *cluster.Cert, error) {
	clock := fixedClock{base}
	secrets := cluster.Secrets{"sim-secret-sim-secret-sim-secret-0123"}
	a, err := cluster.NewNodeKeys(st.ID, "0123456789abcdef", base, secrets)
	if err != nil {
		return nil, nil, err
	}
	b, err := cluster.NewNodeKeys("us-west-042", "fedcba9876543210", base, secrets)
	if err != nil {
		return nil, nil, err
	}
	stamp := cluster.NewSigningStamper(a, clock)
	st.Rooms, st.Participants, st.Consumers, st.Producers, st.UptimeSec = 3, 2000, 4000, 2, 86400
	for i := range 2 { // a node of two workers
		st.Workers = append(st.Workers, node.WorkerStats{Index: i, UDP: fmt.Sprintf("10.0.0.1:%d", 50000+i), Routers: 2,
			Consumers: 2000, Packets: 1 << 40, Bytes: 1 << 50, UDP4: 1000})
	}
	part := node.ParticipantInfo{ID: "PA_4f9c2b7d1e8a", Identity: "viewer-123456", JoinedAt: base.UnixMilli()}
	prod := node.ProducerInfo{ID: "TR_8d2f0c1b9e7a", Participant: "PA_1a2b3c4d5e6f", Kind: "video", Mid: "1", Codec: "video/VP8", ClockRate: 90000}
	req := relay.PipeRequest{Room: "townhall", Producer: prod.ID, From: st.ID, RelayAddr: st.RelayAddr, Key: make([]byte, 32), KeyEpoch: 1, SSRC: 0x12345678}
	rep := relay.PipeReply{OK: true, RelayAddr: "10.1.0.42:7882", Key: make([]byte, 32), KeyEpoch: 1, SSRC: 0x9abcdef0}
	sizes := map[string]int{}
	seal := func(typ string, body any) error {
		raw, err := stamp.Seal(typ, body)
		sizes[typ] = len(raw)
		return err
	}
	sealTo := func(typ string, body any) error {
		plain, err := json.Marshal(body)
		if err != nil {
			return err
		}
		to := b.Cert()
		sealed, err := a.SealTo(&to, typ, nil, plain)
		if err != nil {
			return err
		}
		return seal(typ, sealed)
	}
	room := func(typ string, m cluster.RoomMsg) error {
		raw, err := cluster.SealRoomMsg(stamp, m)
		sizes[typ] = len(raw)
		return err
	}
	// A sync reply of a node with 2,000 viewers of a town hall: the snapshot's budget bounds it.
	parts := make([]node.ParticipantInfo, 2000)
	for i := range parts {
		parts[i] = part
		parts[i].ID = fmt.Sprintf("PA_%012d", i)
	}
	cert := a.Cert()
	entries := make([]cluster.DigestEntry, max(regionNodes, 1))
	for i := range entries {
		entries[i] = cluster.DigestEntry{Inc: "0123456789abcdef", AgeMs: 734, Stats: st, Cert: &cert}
		entries[i].Stats.ID = fmt.Sprintf("%s-%04d", st.ID, i)
	}
	for _, err := range []error{
		seal(msgHeartbeat, st),
		func() error { // the largest part
			for _, d := range cluster.SplitDigest(st.Region, entries[0], entries[1:], cluster.DigestBudget) {
				raw, err := stamp.Seal(msgDigest, d)
				if err != nil {
					return err
				}
				sizes[msgDigest] = max(sizes[msgDigest], len(raw))
			}
			return nil
		}(),
		room(msgJoined, cluster.ParticipantJoinedMsg{Participant: part}),
		room(msgLeft, cluster.ParticipantLeftMsg{ID: part.ID}),
		room(msgProducer, cluster.ProducerAddedMsg{Producer: prod}),
		seal(msgPiped, struct {
			Producer string `json:"producer"`
			Parent   string `json:"parent"`
		}{prod.ID, "us-east-017"}),
		sealTo(msgPipe, req),
		sealTo(msgPipeReply, rep),
		seal(msgSync, struct{}{}),
		room(msgSyncReply, cluster.Snapshot(parts, []node.ProducerInfo{prod}, cluster.SyncBudget)),
	} {
		if err != nil {
			return nil, nil, err
		}
	}
	return sizes, &cert, nil
}
