package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
)

// keysOrDev returns the API key pair, or the development pair (and true) when none is configured.
func keysOrDev(key, secret string) (auth.Keys, bool) {
	if key == "" && secret == "" {
		return auth.DevKeys(), true
	}
	return auth.Keys{Key: key, Secret: secret}, false
}

// tokenConfig is the configuration of `cascade token`.
type tokenConfig struct {
	Room      string
	Identity  string
	Publish   bool
	Subscribe bool
	Admin     bool
	Metadata  string
	TTL       time.Duration
	APIKey    string
	APISecret string
}

func tokenFlags(t *tokenConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("cascade token", flag.ContinueOnError)
	fs.StringVar(&t.Room, "room", t.Room, "room the token admits to (required, unless --admin)")
	fs.StringVar(&t.Identity, "identity", t.Identity, "participant identity (required, unless --admin)")
	fs.BoolVar(&t.Publish, "publish", t.Publish, "grant publishing")
	fs.BoolVar(&t.Subscribe, "subscribe", t.Subscribe, "grant subscribing")
	fs.BoolVar(&t.Admin, "admin", t.Admin, "the admin grant: /admin/drain, /cluster, /stats, pprof, and stopping any WHIP/WHEP session")
	fs.StringVar(&t.Metadata, "metadata", t.Metadata, fmt.Sprintf("the participant's metadata (free text, often JSON; at most %d bytes): others see it in the room", auth.MaxMetadata))
	fs.DurationVar(&t.TTL, "ttl", t.TTL, "validity of the token")
	fs.StringVar(&t.APIKey, "api-key", t.APIKey, "API key (default $"+envName("api-key")+", else the development key)")
	fs.StringVar(&t.APISecret, "api-secret", t.APISecret, "API secret (default $"+envName("api-secret")+", else the development secret)")
	fs.SetOutput(io.Discard)
	return fs
}

// loadTokenConfig parses the arguments of `cascade token`; the API key pair defaults to
// CASCADE_API_KEY and CASCADE_API_SECRET.
func loadTokenConfig(args []string, getenv func(string) string) (tokenConfig, error) {
	t := tokenConfig{
		TTL:       24 * time.Hour,
		APIKey:    getenv(envName("api-key")),
		APISecret: getenv(envName("api-secret")),
	}
	fs := tokenFlags(&t)
	if err := fs.Parse(args); err != nil {
		return tokenConfig{}, err
	}
	if fs.NArg() > 0 {
		return tokenConfig{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case t.Room == "" && !t.Admin:
		return tokenConfig{}, errors.New("--room is required (unless --admin)")
	case t.Identity == "" && !t.Admin:
		return tokenConfig{}, errors.New("--identity is required (unless --admin)")
	case (t.Room == "") != (t.Identity == ""):
		return tokenConfig{}, errors.New("--room and --identity go together")
	case t.TTL <= 0:
		return tokenConfig{}, fmt.Errorf("ttl %v: must be positive", t.TTL)
	case len(t.Metadata) > auth.MaxMetadata:
		return tokenConfig{}, fmt.Errorf("--metadata is %d bytes, at most %d are accepted", len(t.Metadata), auth.MaxMetadata)
	}
	if err := validateKeys(t.APIKey, t.APISecret); err != nil {
		return tokenConfig{}, err
	}
	return t, nil
}

// runToken is `cascade token`: it prints an access token.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	t, err := loadTokenConfig(args, getenv)
	if err != nil {
		return usageError(err, stderr, tokenFlags(&tokenConfig{TTL: 24 * time.Hour}),
			"cascade token --room R --identity I [--publish] [--subscribe] [--metadata S] [--ttl D] [--api-key K --api-secret S]\n"+
				"       cascade token --admin [--ttl D] [--api-key K --api-secret S]")
	}
	keys, dev := keysOrDev(t.APIKey, t.APISecret)
	if dev {
		fmt.Fprintf(stderr, "cascade token: no API key configured, signing with the development key pair (key %q)\n", keys.Key)
	}
	tok, err := keys.Mint(auth.Grant{Room: t.Room, Identity: t.Identity, Publish: t.Publish, Subscribe: t.Subscribe, Admin: t.Admin, Metadata: t.Metadata}, t.TTL)
	if err != nil {
		fmt.Fprintf(stderr, "cascade token: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}
