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
