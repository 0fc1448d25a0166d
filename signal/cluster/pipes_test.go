package cluster

import (
	"slices"
	"testing"
)

func TestMissing(t *testing.T) {
	for _, c := range []struct {
		last, seq uint16
		want      []uint16
	}{
		{10, 11, nil},
		{10, 10, nil},
		{10, 9, nil},
		{10, 13, []uint16{11, 12}},
		{65534, 2, []uint16{65535, 0, 1}},
		{10, 10 + maxNackGap + 1, nil},
	} {
		if got := missing(c.last, c.seq); !slices.Equal(got, c.want) {
			t.Errorf("missing(%d, %d) = %v, want %v", c.last, c.seq, got, c.want)
		}
	}
}
