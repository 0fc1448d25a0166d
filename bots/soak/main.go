// Command soak runs bots that join and leave continuously against a three-node cluster of real
// cascade processes and watches the nodes for leaks. Usage (Taskfile: task soak DURATION=1h):
//
//	go build -o bin/cascade ./cmd/cascade && go run ./bots/soak -cascade bin/cascade -duration 30m
//
// Every node is read from its /metrics every few seconds and summarised each minute: goroutines,
// heap in use (the smallest value of the minute) and resident set. With --pprof (the default)
// each minute ends with a quiet reading: no session starts, those under way end, the soak forces
// a full collection (Go's heap profile with gc=1) and reads the live heap and the resident set,
// then the churn goes on. Those quiet figures compare like with like, minute after minute. It
// passes when, after the churn stops, every node's goroutines come back to their baseline (taken
// after a warm-up round, before the churn) within a small constant, and the least-squares slopes
// of the quiet live heap and resident set over the last minutes of the churn stay under a bound.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
)

// options are the soak's flags.
type options struct {
	bin            string
	duration       time.Duration // of the churn
	period, read   time.Duration
	window         time.Duration
	maxSlope       float64 // MiB per hour
	slack          int     // goroutines over the baseline
	settle         time.Duration
	rooms, subs    int
	hold           time.Duration
	workers        int
	minOK          float64
	jsonOut        string
	logDir         string
	pprof          bool
	secret         string
	keys           auth.Keys
	nodes          int
	warmupHold     time.Duration
	baselineWindow time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "cascade", "bin/cascade", "the cascade binary to run as the nodes")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long bots join and leave")
	flag.DurationVar(&o.period, "every", time.Minute, "sampling period: one row per node per period")
	flag.DurationVar(&o.read, "read", 5*time.Second, "how often a node's /metrics is read within a period")
	flag.DurationVar(&o.window, "window", 10*time.Minute, "the slopes are fitted over this last part of the churn")
	flag.Float64Var(&o.maxSlope, "max-slope", 5, "largest heap and RSS slope that passes, in MiB per hour")
	flag.IntVar(&o.slack, "goroutine-slack", 10, "goroutines a node may keep over its baseline after the churn")
	flag.DurationVar(&o.settle, "settle", 2*time.Minute, "how long the goroutines may take to come back after the churn")
	flag.IntVar(&o.rooms, "rooms", 2, "rooms churning at once, each its own chain of sessions")
	flag.IntVar(&o.subs, "subscribers", 4, "subscribers per session of a room (one publisher, video and audio)")
	flag.DurationVar(&o.hold, "hold", 15*time.Second, "how long a session's bots stay once all joined, before they leave")
	flag.IntVar(&o.workers, "workers", 1, "media workers per node")
	flag.Float64Var(&o.minOK, "min-ok", 0.9, "share of sessions whose bots must all join and receive every track")
	flag.StringVar(&o.jsonOut, "json", "soak.json", "write the samples and the verdict here (empty: nowhere)")
	flag.StringVar(&o.logDir, "logs", "", "directory for the nodes' logs and goroutine dumps (empty: a new temporary one)")
	flag.BoolVar(&o.pprof, "pprof", true, "run the nodes with --pprof: the live heap is read after a forced collection, and a node that leaks has its goroutines dumped")
	flag.StringVar(&o.secret, "cluster-secret", "", "the nodes' shared --cluster-secret (empty: a random one)")
	flag.Parse()
	o.nodes, o.warmupHold, o.baselineWindow = 3, 3*time.Second, 30*time.Second
	if o.secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		o.secret = hex.EncodeToString(b[:])
	}
	var kb [24]byte
	_, _ = rand.Read(kb[:])
	o.keys = auth.Keys{Key: "soak", Secret: hex.EncodeToString(kb[:])}
	if o.logDir == "" {
		d, err := os.MkdirTemp("", "cascade-soak-")
		if err != nil {
			fatal(err)
		}
		o.logDir = d
	} else if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak(ctx, o)
	if res != nil {
		res.print(os.Stdout)
		if o.jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "soak:", werr)
			}
		}
	}
	if err != nil {
		fatal(err)
	}
	if !res.Pass {
		fmt.Fprintln(os.Stderr, "soak: FAIL (node logs and goroutine dumps in", o.logDir+")")
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "soak: PASS")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(2)
}
