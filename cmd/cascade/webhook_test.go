package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

const testWebhookKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestWebhookConfig: --webhook-url repeats and takes commas; the environment takes a
// comma-separated list, YAML a list; each source replaces the list of the one before it.
func TestWebhookConfig(t *testing.T) {
	key := map[string]string{"CASCADE_WEBHOOK_KEY": testWebhookKey}
	yaml := writeFile(t, "webhook-url:\n  - http://yaml-a/hook\n  - https://yaml-b/hook\nwebhook-retry-window: 30m\n")
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"flags", []string{"--webhook-url", "http://a/h", "--webhook-url", "http://b/h,http://c/h"}, nil, []string{"http://a/h", "http://b/h", "http://c/h"}},
		{"env", nil, map[string]string{"CASCADE_WEBHOOK_URL": "http://a/h, http://b/h"}, []string{"http://a/h", "http://b/h"}},
		{"yaml", []string{"--config", yaml}, nil, []string{"http://yaml-a/hook", "https://yaml-b/hook"}},
		{"env over yaml", []string{"--config", yaml}, map[string]string{"CASCADE_WEBHOOK_URL": "http://env/h"}, []string{"http://env/h"}},
		{"flags over env", []string{"--webhook-url", "http://flag/h", "--webhook-url", "http://flag2/h"}, map[string]string{"CASCADE_WEBHOOK_URL": "http://env/h"}, []string{"http://flag/h", "http://flag2/h"}},
	} {
		e := map[string]string{}
		for k, v := range key {
			e[k] = v
		}
		for k, v := range c.env {
			e[k] = v
		}
		cfg, err := loadConfig(c.args, env(e))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := cfg.WebhookURLs.list(); !slices.Equal(got, c.want) {
			t.Errorf("%s: urls %q, want %q", c.name, got, c.want)
		}
	}
	cfg, err := loadConfig([]string{"--config", yaml}, env(key))
	if err != nil || cfg.WebhookRetryWindow != 30*time.Minute {
		t.Fatalf("retry window from YAML: %v %v", cfg.WebhookRetryWindow, err)
	}
	if cfg, err := loadConfig(nil, env(nil)); err != nil || cfg.WebhookURLs != "" || cfg.WebhookRetryWindow != 0 {
		t.Fatalf("defaults: %q %v %v", cfg.WebhookURLs, cfg.WebhookRetryWindow, err)
	}
}

// TestWebhookConfigErrors: a URL without a key, a short or malformed key, a URL that is not
// http(s), a retry window out of range are refused, each naming its flag.
func TestWebhookConfigErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-url", "http://a/h"}, "webhook-key is not"},
		{[]string{"--webhook-url", "http://a/h", "--webhook-key", "short"}, "webhook-key"},
		{[]string{"--webhook-url", "http://a/h", "--webhook-key", "whsec_!!!!notbase64!!!!!!!!!!!!!!!"}, "base64"},
		{[]string{"--webhook-url", "ftp://a/h", "--webhook-key", testWebhookKey}, "webhook-url"},
		{[]string{"--webhook-url", "/just/a/path", "--webhook-key", testWebhookKey}, "webhook-url"},
		{[]string{"--webhook-url", "http://a/h", "--webhook-key", testWebhookKey, "--webhook-retry-window", "500ms"}, "webhook-retry-window"},
		{[]string{"--webhook-retry-window", "48h"}, "webhook-retry-window"},
		{[]string{"--webhook-retry-window", "-1s"}, "webhook-retry-window"},
	} {
		_, err := loadConfig(c.args, env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	if _, err := loadConfig([]string{"--config", writeFile(t, "webhook-url: {a: 1}\n")}, env(nil)); err == nil {
		t.Error("a map as webhook-url was accepted")
	}
}

// TestStartWebhooks: no URL, no sender; with URLs, a sender whose metrics are registered.
func TestStartWebhooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	if s, err := startWebhooks(Config{}, reg, hclog.NewNullLogger()); s != nil || err != nil {
		t.Fatalf("no URL: %v %v", s, err)
	}
	cfg, err := loadConfig([]string{"--webhook-url", "http://127.0.0.1:1/h", "--webhook-key", testWebhookKey}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := startWebhooks(cfg, reg, hclog.NewNullLogger())
	if err != nil || s == nil {
		t.Fatalf("with a URL: %v %v", s, err)
	}
	defer s.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.Contains(names, "cascade_webhook_queue_length") || !slices.Contains(names, "cascade_webhook_deliveries_total") {
		t.Fatalf("metrics %v", names)
	}
}
