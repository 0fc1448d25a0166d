package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	ossignal "os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cascade-sfu/cascade/bots"
	"github.com/pion/webrtc/v4"
)

// botsConfig is the configuration of `cascade bots`.
type botsConfig struct {
	URLs         string
	PublishURL   string
	Room         string
	Rooms        int
	Publishers   int
	Subscribers  int
	Duration     time.Duration
	Rate         float64
	Video, Audio bool
	Simulcast    bool
	APIKey       string
	APISecret    string
	LoopbackOnly bool
	Networks     string
	JoinTimeout  time.Duration
	MaxStall     time.Duration
	NoRedirect   bool
	Regions      string
	NoResume     bool
	RunID        string
	JSON         string
	HTML         string
	Quiet        bool
}

func botsFlags(c *botsConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("cascade bots", flag.ContinueOnError)
	fs.StringVar(&c.URLs, "url", c.URLs, "comma-separated node URLs (ws://HOST:PORT); subscribers spread over them round-robin")
	fs.StringVar(&c.PublishURL, "publish-url", c.PublishURL, "node URL the publishers join (default: the first --url)")
	fs.StringVar(&c.Room, "room", c.Room, "room name (with --rooms N: ROOM-0 .. ROOM-N-1)")
	fs.IntVar(&c.Rooms, "rooms", c.Rooms, "rooms loaded in parallel")
	fs.IntVar(&c.Publishers, "publishers", c.Publishers, "publishers per room")
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "subscribers per room")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long the full load holds once every subscriber receives media (or --join-timeout passed)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "bots joining per second")
	fs.BoolVar(&c.Video, "video", c.Video, "publishers send VP8 video (~1.5 Mbit/s, 30 fps)")
	fs.BoolVar(&c.Audio, "audio", c.Audio, "publishers send Opus audio")
	fs.BoolVar(&c.Simulcast, "simulcast", c.Simulcast, "publishers send their video as three simulcast layers (160x90, 320x180, 640x360); subscribers record the layer they receive over time (in the report)")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "API key the nodes trust (default: the development key pair)")
	fs.StringVar(&c.APISecret, "api-secret", c.APISecret, "API secret the nodes trust")
	fs.BoolVar(&c.LoopbackOnly, "loopback-only", c.LoopbackOnly, "keep the bots' media on 127.0.0.1")
	fs.StringVar(&c.Networks, "networks", c.Networks, "comma-separated ICE candidate networks of every bot, of udp4, tcp4, udp6, tcp6 (e.g. udp6,tcp6: IPv6 only; tcp4: ICE-TCP only); empty: the client's default, udp4,tcp4")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", c.JoinTimeout, "longest a bot may take to join")
	fs.DurationVar(&c.MaxStall, "max-stall", c.MaxStall, "fail (exit 1) when a subscriber goes without media from a live producer for longer than this (0: never fail on stalls; they are reported either way)")
	fs.BoolVar(&c.NoRedirect, "no-redirect", c.NoRedirect, "join exactly the nodes given: ask them to keep every bot instead of following a placement redirect (default: follow, as real clients do)")
	fs.StringVar(&c.Regions, "regions", c.Regions, "comma-separated region hints for placement: subscriber n gives the n-th (round-robin, as --url), publishers the first (empty: no hint)")
	fs.BoolVar(&c.NoResume, "no-resume", c.NoResume, "a bot whose node goes loses its session (default: it resumes on another node, PROTOCOL.md \"Resume\")")
	fs.StringVar(&c.RunID, "run-id", c.RunID, "id put in every bot's name (sub-ROOM-ID-N), so that two runs in one room do not replace each other's bots (default: random)")
	fs.StringVar(&c.JSON, "json", c.JSON, "write the JSON report to this file")
	fs.StringVar(&c.HTML, "report", c.HTML, "write an HTML report with plots to this file")
	fs.BoolVar(&c.Quiet, "quiet", c.Quiet, "no live progress display")
	fs.SetOutput(io.Discard)
	return fs
}

func loadBotsConfig(args []string, getenv func(string) string) (botsConfig, error) {
	c := botsConfig{URLs: "ws://127.0.0.1:7880", Room: "load", Rooms: 1, Publishers: 1, Subscribers: 10,
		Duration: 20 * time.Second, Rate: 20, Video: true, Audio: true, JoinTimeout: 15 * time.Second, MaxStall: 2 * time.Second,
		APIKey: getenv(envName("api-key")), APISecret: getenv(envName("api-secret"))}
	fs := botsFlags(&c)
	if err := fs.Parse(args); err != nil {
		return botsConfig{}, err
	}
	if fs.NArg() > 0 {
		return botsConfig{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case strings.TrimSpace(c.URLs) == "":
		return botsConfig{}, errors.New("--url is required")
	case c.Room == "":
		return botsConfig{}, errors.New("--room is required")
	case c.Rooms < 1 || c.Publishers < 0 || c.Subscribers < 1:
		return botsConfig{}, errors.New("--rooms and --subscribers must be at least 1, --publishers at least 0 (0: the subscribers watch the room's producers, of another process's publishers)")
	case c.Duration <= 0 || c.Rate <= 0 || c.JoinTimeout <= 0:
		return botsConfig{}, errors.New("--duration, --rate and --join-timeout must be positive")
	case c.MaxStall < 0:
		return botsConfig{}, errors.New("--max-stall must not be negative")
	case !c.Video && !c.Audio:
		return botsConfig{}, errors.New("publishers send nothing: keep --video or --audio")
	}
	if _, err := parseNetworks(c.Networks); err != nil {
		return botsConfig{}, err
	}
	if err := validateKeys(c.APIKey, c.APISecret); err != nil {
		return botsConfig{}, err
	}
	return c, nil
}

// parseNetworks parses --networks: empty (nil, the client's default) or a comma-separated list
// of distinct candidate networks, udp4, tcp4, udp6, tcp6.
func parseNetworks(s string) ([]webrtc.NetworkType, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var nets []webrtc.NetworkType
	for _, f := range strings.Split(s, ",") {
		n, err := webrtc.NewNetworkType(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--networks %q: %q is none of udp4, tcp4, udp6, tcp6", s, strings.TrimSpace(f))
		}
		if slices.Contains(nets, n) {
			return nil, fmt.Errorf("--networks %q: %s twice", s, n)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func runBots(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := loadBotsConfig(args, getenv)
	if err != nil {
		return usageError(err, stderr, botsFlags(&botsConfig{}),
			"cascade bots --url ws://HOST:PORT[,ws://HOST2:PORT] [--publish-url URL] [--no-redirect] [--networks udp6,tcp6] --room R --publishers P --subscribers S --duration D [--json FILE] [--report FILE.html]")
	}
	keys, _ := keysOrDev(c.APIKey, c.APISecret)
	networks, _ := parseNetworks(c.Networks) // validated
	o := bots.Options{PublishURL: c.PublishURL, Room: c.Room, Rooms: c.Rooms, Publishers: c.Publishers,
		Subscribers: c.Subscribers, Duration: c.Duration, Rate: c.Rate, Video: c.Video, Audio: c.Audio, Simulcast: c.Simulcast, Keys: keys,
		LoopbackOnly: c.LoopbackOnly, Networks: networks, JoinTimeout: c.JoinTimeout, MaxStall: c.MaxStall, NoRedirect: c.NoRedirect, NoResume: c.NoResume, RunID: c.RunID}
	for _, u := range strings.Split(c.URLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.URLs = append(o.URLs, u)
		}
	}
	for _, r := range strings.Split(c.Regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			o.Regions = append(o.Regions, r)
		}
	}
	if !c.Quiet {
		o.Progress = stderr
	}
	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bots.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "cascade bots: %v\n", err)
		return exitUsage
	}
	rep.WriteSummary(stdout)
	if c.JSON != "" {
		if err := rep.WriteJSON(c.JSON); err != nil {
			fmt.Fprintf(stderr, "cascade bots: %v\n", err)
			return exitError
		}
	}
	if c.HTML != "" {
		if err := rep.WriteHTML(c.HTML); err != nil {
			fmt.Fprintf(stderr, "cascade bots: %v\n", err)
			return exitError
		}
	}
	if !rep.OK() {
		for _, p := range rep.Problems() {
			fmt.Fprintf(stderr, "cascade bots: %s\n", p)
		}
		return exitError
	}
	return exitOK
}
