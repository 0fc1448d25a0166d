package cluster

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// rejectReason is why a control message was refused (the reason label of
// cascade_cluster_rejected_total).
type rejectReason int

const (
	rejMalformed      rejectReason = iota // not an envelope
	rejUnsigned                           // no cert or signature
	rejCertMismatch                       // cert of another node or incarnation than the envelope's
	rejVoucher                            // cert not vouched for by an accepted cluster secret
	rejSignature                          // signature does not verify (tampered with)
	rejTime                               // outside the freshness window
	rejDuplicate                          // (node, inc, seq) seen before: a replay or a NATS redelivery
	rejOldIncarnation                     // of a retired incarnation, or too far behind its sender's newest
	rejSealed                             // a sealed body not for this incarnation, or tampered with
	rejMismatch                           // the body names another sender, room or reply subject
	numRejects
)

var rejectNames = [numRejects]string{"malformed", "unsigned", "cert_mismatch", "voucher", "signature",
	"stale_time", "duplicate", "old_incarnation", "sealed", "mismatch"}

func (r rejectReason) String() string { return rejectNames[r] }

// reasonOf maps an error of Open, Verifier.Verify or Dedup.Accept to its reason.
func reasonOf(err error) rejectReason {
	switch {
	case errors.Is(err, ErrUnsigned):
		return rejUnsigned
	case errors.Is(err, ErrCertMismatch):
		return rejCertMismatch
	case errors.Is(err, ErrVoucher):
		return rejVoucher
	case errors.Is(err, ErrSignature):
		return rejSignature
	case errors.Is(err, ErrTime):
		return rejTime
	case errors.Is(err, ErrDuplicate):
		return rejDuplicate
	case errors.Is(err, ErrStale):
		return rejOldIncarnation
	case errors.Is(err, ErrSealed):
		return rejSealed
	}
	return rejMalformed
}

// rejectLogInterval is the least time between two logs of refused messages: a flood of forged
// messages costs one log line per interval, not one per message.
const rejectLogInterval = 10 * time.Second

// rejects counts the refused control messages by reason and logs them, at most once per
// rejectLogInterval. Duplicates are counted, never logged: NATS redelivers after a reconnect.
type rejects struct {
	n      [numRejects]atomic.Uint64
	logged atomic.Uint64 // the refusals counted at the last log
	next   atomic.Int64  // Unix nanoseconds before which nothing is logged
	clock  Clock
	log    hclog.Logger
}

func (r *rejects) add(why rejectReason, from string) {
	r.n[why].Add(1)
	if why == rejDuplicate {
		return
	}
	now := r.clock.Now().UnixNano()
	next := r.next.Load()
	if now < next || !r.next.CompareAndSwap(next, now+int64(rejectLogInterval)) {
		return
	}
	var total uint64
	for i := range r.n {
		if rejectReason(i) != rejDuplicate {
			total += r.n[i].Load()
		}
	}
	since := total - r.logged.Swap(total)
	r.log.Warn("refused control messages from the bus (forged, tampered, replayed or of another cluster secret)",
		"reason", why.String(), "claimed_sender", from, "refused_since_last_log", since)
}

// counts is the refusals so far, by reason name.
func (r *rejects) counts() map[string]uint64 {
	out := make(map[string]uint64, numRejects)
	for i := range r.n {
		out[rejectNames[i]] = r.n[i].Load()
	}
	return out
}
