package bots

import (
	"strings"
	"testing"
)

func TestSumMetrics(t *testing.T) {
	text := "# HELP go_goroutines x\ngo_goroutines 42\nprocess_resident_memory_bytes 2.9437952e+07\n" +
		"cascade_dropped_packets_total{worker=\"0\"} 3\ncascade_dropped_packets_total{worker=\"1\"} 4\n"
	m, err := SumMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m["process_resident_memory_bytes"] != 29437952 || m["cascade_dropped_packets_total"] != 7 {
		t.Fatalf("parsed %v", m)
	}
}

func TestParseMediaMetrics(t *testing.T) {
	text := `# HELP cascade_consumers_per_layer x
cascade_consumers_per_layer{layer="0"} 1
cascade_consumers_per_layer{layer="1"} 2
cascade_consumers_per_layer{layer="2"} 97
cascade_layer_switches_total 12
cascade_subscriber_estimate_bps_bucket{le="500000"} 3
cascade_subscriber_estimate_bps_bucket{le="+Inf"} 100
cascade_subscriber_estimate_bps_sum 2.5e+08
cascade_subscriber_estimate_bps_count 100
`
	m, err := ParseMediaMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.ConsumersPerLayer["2"] != 97 || m.ConsumersPerLayer["0"] != 1 || m.LayerSwitches != 12 || m.Estimates != 100 ||
		m.EstimateMeanBps != 2.5e6 || m.EstimateBuckets["500000"] != 3 {
		t.Fatalf("parsed %+v", m)
	}
	if s := m.String(); !strings.Contains(s, "layer 2: 97") || !strings.Contains(s, "mean 2500 kbit/s") {
		t.Errorf("String: %s", s)
	}
}
