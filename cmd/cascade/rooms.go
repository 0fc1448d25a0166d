package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// `cascade rooms list|get|delete` and `cascade participants list|remove|mute`: the room API
// (api/openapi.yaml) from the command line. Each call mints a short-lived admin token with the
// API key pair, as `cascade token --admin` would, and sends it to the node at --url; any node
// answers for the whole cluster.

// adminTTL is the validity of the admin token a room command mints for itself.
const adminTTL = 5 * time.Minute

// apiConfig is what every room command takes.
type apiConfig struct {
	URL       string
	APIKey    string
	APISecret string
	JSON      bool
	Timeout   time.Duration
	// Page flags of the list commands, and the mute command's.
	After    string
	Limit    int
	Producer string
	Unmute   bool
}

// apiCommand is one room command: its positional arguments and what it does.
type apiCommand struct {
	args  []string // names of the positional arguments
	paged bool     // a list: --after and --limit
	flags func(fs *flag.FlagSet, c *apiConfig)
	run   func(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error
}

var roomCommands = map[string]apiCommand{
	"list":   {paged: true, run: roomsList},
	"get":    {args: []string{"ROOM"}, run: roomsGet},
	"delete": {args: []string{"ROOM"}, run: roomsDelete},
}

var participantCommands = map[string]apiCommand{
	"list":   {args: []string{"ROOM"}, paged: true, run: participantsList},
	"remove": {args: []string{"ROOM", "IDENTITY"}, run: participantsRemove},
	"mute": {args: []string{"ROOM", "IDENTITY"}, run: participantsMute, flags: func(fs *flag.FlagSet, c *apiConfig) {
		fs.StringVar(&c.Producer, "producer", "", "the producer to mute (default: every producer of the participant)")
		fs.BoolVar(&c.Unmute, "unmute", false, "lift a moderator's mute and ask the participant to unmute (it may decline)")
	}},
}

// runRooms is `cascade rooms`.
func runRooms(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runAPICommand("rooms", roomCommands, []string{"list", "get", "delete"}, args, getenv, stdout, stderr)
}

// runParticipants is `cascade participants`.
func runParticipants(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runAPICommand("participants", participantCommands, []string{"list", "remove", "mute"}, args, getenv, stdout, stderr)
}

// runAPICommand parses and runs `cascade <group> <sub> [flags] ARGS...`.
func runAPICommand(group string, cmds map[string]apiCommand, order []string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	groupUsage := fmt.Sprintf("Usage: cascade %s %s [flags] ...\n\nRun \"cascade %s <command> -h\" for the flags.\n", group, strings.Join(order, "|"), group)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, groupUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "cascade %s: unknown command %q\n\n%s", group, args[0], groupUsage)
		return exitUsage
	}
	name := "cascade " + group + " " + args[0]
	c, fs := apiConfig{}, flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:7880", "HTTP URL of any node of the cluster")
	fs.StringVar(&c.APIKey, "api-key", getenv(envName("api-key")), "API key (default $"+envName("api-key")+", else the development key)")
	fs.StringVar(&c.APISecret, "api-secret", getenv(envName("api-secret")), "API secret (default $"+envName("api-secret")+", else the development secret)")
	fs.BoolVar(&c.JSON, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "how long to wait for the node's answer")
	if cmd.paged {
		fs.StringVar(&c.After, "after", "", "start after this name (the next cursor of the previous page)")
		fs.IntVar(&c.Limit, "limit", 100, "page size, 1 to 1000")
	}
	if cmd.flags != nil {
		cmd.flags(fs, &c)
	}
	synopsis := name + " [flags]"
	for _, a := range cmd.args {
		synopsis += " " + a
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err == nil {
		err = checkAPIConfig(&c, cmd, pos)
	}
	if err != nil {
		return usageError(err, stderr, fs, synopsis)
	}
	keys, dev := keysOrDev(c.APIKey, c.APISecret)
	if dev {
		fmt.Fprintf(stderr, "%s: no API key configured, signing with the development key pair (key %q)\n", name, keys.Key)
	}
	tok, err := keys.Mint(auth.Grant{Admin: true}, adminTTL)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	api := &apiClient{base: strings.TrimSuffix(c.URL, "/"), token: tok, http: &http.Client{}, warn: func(s string) {
		fmt.Fprintf(stderr, "%s: %s\n", name, s)
	}}
	if err := cmd.run(ctx, api, c, pos, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

// parseInterspersed parses flags placed before, between or after the positional arguments
// (`cascade rooms get demo --json`), which flag.Parse alone stops at; after "--" every argument
// is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// checkAPIConfig checks the flags and the positional arguments of a room command.
func checkAPIConfig(c *apiConfig, cmd apiCommand, got []string) error {
	want := cmd.args
	if len(got) != len(want) {
		if len(want) == 0 {
			return fmt.Errorf("unexpected argument %q", got[0])
		}
		return fmt.Errorf("want %d argument(s) %s, got %d", len(want), strings.Join(want, " "), len(got))
	}
	for i, a := range got {
		if a == "" {
			return fmt.Errorf("%s is empty", want[i])
		}
	}
	u, err := url.Parse(c.URL)
	if err == nil {
		switch u.Scheme { // the URL given to the bots works too
		case "ws":
			u.Scheme = "http"
		case "wss":
			u.Scheme = "https"
		}
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q: want http://HOST:PORT", c.URL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/ws")
	c.URL = u.String()
	if cmd.paged && (c.Limit < 1 || c.Limit > 1000) {
		return fmt.Errorf("--limit %d: must be from 1 to 1000", c.Limit)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", c.Timeout)
	}
	return validateKeys(c.APIKey, c.APISecret)
}

// apiClient calls the room API of one node.
type apiClient struct {
	base  string
	token string
	http  *http.Client
	warn  func(string)
}

// call sends method path (under base) with body as JSON (none when nil) and decodes a 2xx
// answer into out (when not nil). An answer with the API's error object is that *proto.Error.
func (a *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		var pe proto.Error
		if json.Unmarshal(b, &pe) == nil && pe.Code != "" {
			return &pe
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the room API's JSON: %w", method, path, err)
	}
	return nil
}

// unreachable warns that nodes did not answer: the listing may lack their part.
func (a *apiClient) unreachable(nodes []string) {
	if len(nodes) > 0 {
		a.warn("no answer from " + strings.Join(nodes, ", ") + ": the list may lack their part")
	}
}

func pagePath(path string, c apiConfig) string {
	q := url.Values{}
	if c.After != "" {
		q.Set("after", c.After)
	}
	if c.Limit != 0 {
		q.Set("limit", fmt.Sprint(c.Limit))
	}
	if len(q) > 0 {
		return path + "?" + q.Encode()
	}
	return path
}

func roomPath(room string) string { return "/api/rooms/" + url.PathEscape(room) }

func participantPath(room, identity string) string {
	return roomPath(room) + "/participants/" + url.PathEscape(identity)
}

// printJSON writes v indented.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table writes rows under a header, aligned.
func table(out io.Writer, header string, rows [][]string) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

func roomsList(ctx context.Context, api *apiClient, c apiConfig, _ []string, out io.Writer) error {
	var page proto.RoomPage
	if err := api.call(ctx, http.MethodGet, pagePath("/api/rooms", c), nil, &page); err != nil {
		return err
	}
	api.unreachable(page.Unreachable)
	if c.JSON {
		return printJSON(out, page)
	}
	rows := make([][]string, 0, len(page.Rooms))
	for _, r := range page.Rooms {
		rows = append(rows, []string{r.Name, fmt.Sprint(r.Participants), fmt.Sprint(r.Publishers), fmt.Sprint(r.Producers), dash(roomNodes(r.Nodes)), when(r.CreatedAt)})
	}
	if err := table(out, "NAME\tPARTICIPANTS\tPUBLISHERS\tPRODUCERS\tNODES\tCREATED", rows); err != nil {
		return err
	}
	if page.Next != "" {
		api.warn("more rooms: --after " + page.Next)
	}
	return nil
}

// roomNodes shows the nodes carrying a room: id(region):participants.
func roomNodes(nodes []proto.APIRoomNode) string {
	var s []string
	for _, n := range nodes {
		id := n.ID
		if n.Region != "" {
			id += "(" + n.Region + ")"
		}
		s = append(s, fmt.Sprintf("%s:%d", id, n.Participants))
	}
	return strings.Join(s, ",")
}

// dash fills an empty table cell, so that every row has every column.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// when shows Unix milliseconds as UTC time.
func when(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func roomsGet(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error {
	var d proto.APIRoomDetail
	if err := api.call(ctx, http.MethodGet, roomPath(args[0]), nil, &d); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(out, d)
	}
	limit := func(n int) string {
		if n == 0 {
			return "node default"
		}
		return fmt.Sprint(n)
	}
	err := table(out, "ROOM\t"+d.Name, [][]string{
		{"participants", fmt.Sprint(d.Participants)},
		{"publishers", fmt.Sprint(d.Publishers)},
		{"producers", fmt.Sprint(d.Producers)},
		{"nodes", roomNodes(d.Nodes)},
		{"created", when(d.CreatedAt)},
		{"maxParticipants", limit(d.MaxParticipants)},
		{"emptyTimeout", limit(d.EmptyTimeout)},
		{"metadata", dash(d.Metadata)},
	})
	if err != nil || len(d.ProducerList) == 0 {
		return err
	}
	fmt.Fprintln(out)
	rows := make([][]string, 0, len(d.ProducerList))
	for _, p := range d.ProducerList {
		var tree []string
		for _, e := range p.Tree {
			if e.Parent != "" {
				tree = append(tree, e.Parent+">"+e.Node)
			}
		}
		rows = append(rows, []string{p.ID, p.Participant, p.Kind, dash(p.Codec), fmt.Sprint(p.Muted), p.Origin, dash(strings.Join(tree, ","))})
	}
	return table(out, "PRODUCER\tPARTICIPANT\tKIND\tCODEC\tMUTED\tORIGIN\tRELAYS", rows)
}

func roomsDelete(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error {
	if err := api.call(ctx, http.MethodDelete, roomPath(args[0]), nil, nil); err != nil {
		return err
	}
	if !c.JSON {
		fmt.Fprintf(out, "deleted room %s\n", args[0])
	}
	return nil
}

func participantsList(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error {
	var page proto.ParticipantPage
	if err := api.call(ctx, http.MethodGet, pagePath(roomPath(args[0])+"/participants", c), nil, &page); err != nil {
		return err
	}
	api.unreachable(page.Unreachable)
	if c.JSON {
		return printJSON(out, page)
	}
	rows := make([][]string, 0, len(page.Participants))
	for _, p := range page.Participants {
		var prods []string
		for _, pr := range p.Producers {
			s := pr.Kind + ":" + pr.ID
			if pr.Muted {
				s += "(muted)"
			}
			prods = append(prods, s)
		}
		rows = append(rows, []string{p.Identity, p.Node, dash(p.Region), dash(strings.Join(prods, ",")), when(p.JoinedAt), p.ID})
	}
	if err := table(out, "IDENTITY\tNODE\tREGION\tPRODUCERS\tJOINED\tID", rows); err != nil {
		return err
	}
	if page.Next != "" {
		api.warn("more participants: --after " + page.Next)
	}
	return nil
}

func participantsRemove(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error {
	if err := api.call(ctx, http.MethodDelete, participantPath(args[0], args[1]), nil, nil); err != nil {
		return err
	}
	if !c.JSON {
		fmt.Fprintf(out, "removed %s from room %s\n", args[1], args[0])
	}
	return nil
}

func participantsMute(ctx context.Context, api *apiClient, c apiConfig, args []string, out io.Writer) error {
	ids := []string{c.Producer}
	if c.Producer == "" {
		var p proto.APIParticipant
		if err := api.call(ctx, http.MethodGet, participantPath(args[0], args[1]), nil, &p); err != nil {
			return err
		}
		if len(p.Producers) == 0 {
			return errors.New(args[1] + " publishes nothing")
		}
		ids = ids[:0]
		for _, pr := range p.Producers {
			ids = append(ids, pr.ID)
		}
	}
	done := make([]proto.Producer, 0, len(ids))
	for _, id := range ids {
		var pr proto.Producer
		if err := api.call(ctx, http.MethodPost, participantPath(args[0], args[1])+"/mute", proto.MuteProducer{Producer: id, Muted: !c.Unmute}, &pr); err != nil {
			return fmt.Errorf("producer %s: %w", id, err)
		}
		done = append(done, pr)
	}
	if c.JSON {
		return printJSON(out, done)
	}
	rows := make([][]string, 0, len(done))
	for _, pr := range done {
		rows = append(rows, []string{pr.ID, pr.Kind, fmt.Sprint(pr.Muted)})
	}
	if err := table(out, "PRODUCER\tKIND\tMUTED", rows); err != nil {
		return err
	}
	if c.Unmute {
		fmt.Fprintf(out, "asked %s to unmute; the client decides\n", args[1])
	}
	return nil
}
