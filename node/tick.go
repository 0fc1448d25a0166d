package node

import "time"

// everyTick calls pass with each tick's time, every period, until stop is closed. It is the
// loop of the node's periodic passes (dynacast, active speakers): each runs in one goroutine
// that owns its pass's state, so a pass needs no lock of its own.
func everyTick(stop <-chan struct{}, period time.Duration, pass func(now time.Time)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			pass(now)
		}
	}
}
