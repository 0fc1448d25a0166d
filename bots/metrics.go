package bots

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ScrapeMetrics reads a node's /metrics (base is http://host:port): every series' value,
// summed over its labels, by metric name.
func ScrapeMetrics(base string) (map[string]float64, error) {
	return scrape(base, SumMetrics)
}

// SumMetrics parses Prometheus text: every series' value, summed over its labels, by name.
func SumMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	err := eachSample(r, func(series string, v float64) {
		if j := strings.IndexByte(series, '{'); j >= 0 {
			series = series[:j]
		}
		m[series] += v
	})
	return m, err
}

// scrape GETs a node's /metrics (base is http://host:port) and reads the body with parse.
func scrape[T any](base string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return zero, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return zero, fmt.Errorf("%s/metrics: HTTP %d", base, resp.StatusCode)
	}
	return parse(resp.Body)
}

// eachSample calls f with every sample in Prometheus text: its series (the name and labels as
// written) and its value. Comments, blank lines and lines without a numeric value are skipped.
func eachSample(r io.Reader, f func(series string, v float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		f(line[:i], v)
	}
	return sc.Err()
}

// WaitOK polls url until it answers 200 (a node's /readyz), for at most timeout.
func WaitOK(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready at %s after %s", url, timeout)
}

// MediaMetrics are a node's simulcast and bandwidth-estimation figures (issue 15): consumers per
// layer and layer switches (cascade_consumers_per_layer, cascade_layer_switches_total), and the
// distribution of the subscribers' estimates (the cascade_subscriber_estimate_bps histogram).
type MediaMetrics struct {
	ConsumersPerLayer map[string]float64 `json:"consumers_per_layer"`
	LayerSwitches     float64            `json:"layer_switches"`
	// Estimates counts the subscriber transports with an estimate; EstimateMeanBps is their
	// mean; EstimateBuckets the cumulative count at or below each bound (bit/s, as in the
	// histogram's le labels).
	Estimates       float64            `json:"estimates"`
	EstimateMeanBps float64            `json:"estimate_mean_bps"`
	EstimateBuckets map[string]float64 `json:"estimate_buckets,omitempty"`
}

// String is the figures on one line.
func (m MediaMetrics) String() string {
	var layers []string
	for _, l := range slices.Sorted(maps.Keys(m.ConsumersPerLayer)) {
		layers = append(layers, fmt.Sprintf("layer %s: %.0f", l, m.ConsumersPerLayer[l]))
	}
	s := fmt.Sprintf("consumers per layer %s; %.0f layer switches", strings.Join(layers, ", "), m.LayerSwitches)
	if m.Estimates > 0 {
		s += fmt.Sprintf("; %.0f subscriber estimates, mean %.0f kbit/s", m.Estimates, m.EstimateMeanBps/1000)
	}
	return s
}

// ScrapeMediaMetrics reads a node's MediaMetrics from its /metrics (base is http://host:port).
func ScrapeMediaMetrics(base string) (MediaMetrics, error) {
	return scrape(base, ParseMediaMetrics)
}

// ParseMediaMetrics reads MediaMetrics from Prometheus text.
func ParseMediaMetrics(r io.Reader) (MediaMetrics, error) {
	m := MediaMetrics{ConsumersPerLayer: map[string]float64{}, EstimateBuckets: map[string]float64{}}
	var sum float64
	err := eachSample(r, func(series string, v float64) {
		switch {
		case strings.HasPrefix(series, "cascade_consumers_per_layer{"):
			m.ConsumersPerLayer[label(series, "layer")] += v
		case series == "cascade_layer_switches_total":
			m.LayerSwitches = v
		case strings.HasPrefix(series, "cascade_subscriber_estimate_bps_bucket{"):
			m.EstimateBuckets[label(series, "le")] += v
		case series == "cascade_subscriber_estimate_bps_sum":
			sum = v
		case series == "cascade_subscriber_estimate_bps_count":
			m.Estimates = v
		}
	})
	if m.Estimates > 0 {
		m.EstimateMeanBps = sum / m.Estimates
	}
	return m, err
}

// label is the value of label name in a series' {name="value",...} (empty: none).
func label(series, name string) string {
	_, rest, ok := strings.Cut(series, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}
