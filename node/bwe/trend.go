package bwe

import "math"

// The delay detector: the delay-based half of Google congestion control, in a compact form.
// For each pair of consecutive groups, the delay variation is how much longer the second took to
// arrive after the first than it was sent after it; accumulated, it is the growth of the queue
// since the start (on two unrelated clocks, only its changes mean anything). Smoothed, its slope
// over the last trendWindow groups against arrival time says whether the queue grows (the sender
// exceeds the bottleneck), holds, or drains. A fixed delay (propagation, a packet's own
// serialization on a slow link) has no slope. The slope, scaled by the number of samples, is
// compared with a threshold that adapts to the path's jitter (slowly up, faster down), so that
// noise alone does not read as overuse.

// Detector tuning (as in the GCC draft and libwebrtc's trendline estimator).
const (
	trendWindow    = 20    // groups in the regression
	trendSmoothing = 0.9   // of the accumulated delay
	trendGain      = 4.0   // slope -> modified trend
	trendMinDeltas = 60    // the modified trend counts at most this many samples
	thresholdInit  = 12.5  // ms
	thresholdMin   = 6.0   // ms
	thresholdMax   = 600.0 // ms
	kUp, kDown     = 0.0087, 0.039
	overuseFor     = 10.0 // ms of overuse before it counts
)

// signal is the detector's reading.
type signal uint8

const (
	sigNormal signal = iota
	sigOver
	sigUnder
)

type point struct{ x, y float64 } // arrival (ms), smoothed accumulated delay (ms)

type detector struct {
	started          bool
	prevSent, prevRx float64 // the previous group's last send and arrival (ms)
	firstRx          float64
	acc, smooth      float64
	pts              [trendWindow]point
	n, deltas        int
	trend, prevTrend float64
	threshold        float64
	lastUpdate       float64 // arrival (ms) of the last threshold update
	overTime         float64 // ms spent over the threshold
	overCount        int
	sig              signal
}

// group takes one closed group: its last packet's send and arrival times, in ms.
func (d *detector) group(sent, rx float64) {
	if !d.started {
		d.started, d.prevSent, d.prevRx, d.firstRx, d.threshold, d.lastUpdate = true, sent, rx, rx, thresholdInit, rx
		return
	}
	delta := (rx - d.prevRx) - (sent - d.prevSent)
	interArrival := rx - d.prevRx
	d.prevSent, d.prevRx = sent, rx
	d.deltas++
	d.acc += delta
	d.smooth = trendSmoothing*d.smooth + (1-trendSmoothing)*d.acc
	d.pts[d.n%trendWindow] = point{rx - d.firstRx, d.smooth}
	d.n++
	if d.n >= trendWindow {
		d.prevTrend, d.trend = d.trend, slope(d.pts[:])
	}
	d.detect(min(d.deltas, trendMinDeltas), interArrival, rx)
}

// slope is the least-squares slope of pts.
func slope(pts []point) float64 {
	var mx, my float64
	for _, p := range pts {
		mx += p.x
		my += p.y
	}
	mx /= float64(len(pts))
	my /= float64(len(pts))
	var num, den float64
	for _, p := range pts {
		num += (p.x - mx) * (p.y - my)
		den += (p.x - mx) * (p.x - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func (d *detector) detect(n int, interArrival, now float64) {
	if d.n < trendWindow {
		d.sig = sigNormal
		return
	}
	m := float64(n) * d.trend * trendGain
	switch {
	case m > d.threshold:
		d.overTime += interArrival
		d.overCount++
		if d.overTime > overuseFor && d.overCount > 1 && d.trend >= d.prevTrend {
			d.overTime, d.overCount = 0, 0
			d.sig = sigOver
		}
	case m < -d.threshold:
		d.overTime, d.overCount = 0, 0
		d.sig = sigUnder
	default:
		d.overTime, d.overCount = 0, 0
		d.sig = sigNormal
	}
	// Adapt the threshold to the modified trend, unless it is far off (a spike).
	if math.Abs(m) <= d.threshold+15 {
		k := kDown
		if math.Abs(m) > d.threshold {
			k = kUp
		}
		dt := min(now-d.lastUpdate, 100)
		d.threshold += k * (math.Abs(m) - d.threshold) * dt
		d.threshold = max(thresholdMin, min(thresholdMax, d.threshold))
	}
	d.lastUpdate = now
}
