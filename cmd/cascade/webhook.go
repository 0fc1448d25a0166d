package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cascade-sfu/cascade/webhook"
)

// maxRetryWindow bounds --webhook-retry-window: events wait in memory meanwhile.
const maxRetryWindow = 24 * time.Hour

// webhookFlags adds the webhook flags to fs, bound to c.
func webhookFlags(fs *flag.FlagSet, c *Config) {
	fs.Var(&listFlag{p: &c.WebhookURLs}, "webhook-url", "URL that receives the webhook events (repeatable, or comma-separated; YAML: a list); needs --webhook-key")
	fs.StringVar(&c.WebhookKey, "webhook-key", c.WebhookKey, fmt.Sprintf("key signing the webhook calls (Standard Webhooks): whsec_<base64>, or any other string of at least %d bytes used as it is", webhook.MinKeyLen))
	fs.DurationVar(&c.WebhookRetryWindow, "webhook-retry-window", c.WebhookRetryWindow, fmt.Sprintf("how long after it happened a webhook event is still retried, with backoff and jitter; past it, it is dropped and counted (0: %v)", webhook.DefaultRetryWindow))
}

// validateWebhook checks the webhook flags: http(s) URLs, a usable key when there is a URL
// (a node never sends unsigned events), a retry window of a second to a day (0: the default).
func (c Config) validateWebhook() error {
	for _, u := range c.WebhookURLs.list() {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("webhook-url %q: want http(s)://host[:port]/path", u)
		}
	}
	if c.WebhookURLs != "" && c.WebhookKey == "" {
		return errors.New("webhook-url is set but webhook-key is not: webhook calls are always signed; set --webhook-key (e.g. whsec_ and 24 random bytes in base64)")
	}
	if c.WebhookKey != "" {
		if _, err := webhook.ParseKey(c.WebhookKey); err != nil {
			return fmt.Errorf("webhook-key: %w", err)
		}
	}
	if w := c.WebhookRetryWindow; w != 0 && (w < time.Second || w > maxRetryWindow) {
		return fmt.Errorf("webhook-retry-window %v: want 1s to %v (0: %v)", w, maxRetryWindow, webhook.DefaultRetryWindow)
	}
	return nil
}

// startWebhooks starts the webhook sender when URLs are configured, its metrics in reg; nil
// when there is none. The caller closes it after the node stopped.
func startWebhooks(c Config, reg prometheus.Registerer, logger hclog.Logger) (*webhook.Sender, error) {
	urls := c.WebhookURLs.list()
	if len(urls) == 0 {
		return nil, nil
	}
	key, err := webhook.ParseKey(c.WebhookKey) // validated
	if err != nil {
		return nil, err
	}
	window := c.WebhookRetryWindow
	if window == 0 {
		window = webhook.DefaultRetryWindow
	}
	s, err := webhook.NewSender(webhook.Options{URLs: urls, Key: key, RetryWindow: window, Logger: logger})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(webhook.NewCollector(s))
	logger.Info("webhooks on", "urls", len(urls), "retry_window", window)
	return s, nil
}

// urlList is a list of URLs, kept comma-separated so that Config stays comparable. In YAML
// it is a list (or one string, comma-separated).
type urlList string

// list splits the URLs.
func (u urlList) list() []string {
	var out []string
	for _, s := range strings.Split(string(u), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// UnmarshalYAML takes a list of strings or one string.
func (u *urlList) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*u = urlList(strings.Join(urlList(one).list(), ","))
		return nil
	}
	var many []string
	if err := unmarshal(&many); err != nil {
		return errors.New("want a list of URLs")
	}
	for _, s := range many {
		if strings.Contains(s, ",") {
			return fmt.Errorf("%q: a URL must not hold a comma", s)
		}
	}
	*u = urlList(strings.Join(urlList(strings.Join(many, ",")).list(), ","))
	return nil
}

// listFlag is a repeatable flag filling a urlList: each use adds its comma-separated values.
// The first use in a source (the environment, the command line) replaces the list the sources
// before it gave (defaults, the YAML file); reset starts a new source.
type listFlag struct {
	p     *urlList
	fresh bool
}

func (l *listFlag) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return string(*l.p)
}

func (l *listFlag) Set(v string) error {
	list := urlList(v).list()
	if l.fresh {
		list = append(l.p.list(), list...)
	}
	*l.p, l.fresh = urlList(strings.Join(list, ",")), true
	return nil
}

// reset makes the next Set replace the list.
func (l *listFlag) reset() { l.fresh = false }
