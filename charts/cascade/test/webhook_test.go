package test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const testWebhookKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestWebhookValues: webhook.urls and webhook.key reach every pod as CASCADE_WEBHOOK_URL (comma-
// separated) and CASCADE_WEBHOOK_KEY from a created Secret, and the node's loader accepts them;
// with existingSecret the key comes from there and no Secret is made; without urls nothing
// of webhooks is rendered.
func TestWebhookValues(t *testing.T) {
	r := render(t, renderOpts{set: []string{"webhook.urls={http://app.example.com/hook,https://audit.example.com/in}",
		"webhook.key=" + testWebhookKey, "webhook.retryWindow=30m"}})
	_, name, tpl := r.workload(t)
	c := container(t, &tpl.Spec, "cascade")
	for _, pod := range r.podNames(t) {
		envs := r.podEnv(t, c, pod)
		if got := envs["CASCADE_WEBHOOK_URL"]; got != "http://app.example.com/hook,https://audit.example.com/in" {
			t.Errorf("pod %s: CASCADE_WEBHOOK_URL %q", pod, got)
		}
		if envs["CASCADE_WEBHOOK_KEY"] != testWebhookKey || envs["CASCADE_WEBHOOK_RETRY_WINDOW"] != "30m" {
			t.Errorf("pod %s: key %q, window %q", pod, envs["CASCADE_WEBHOOK_KEY"], envs["CASCADE_WEBHOOK_RETRY_WINDOW"])
		}
		r.checkNodeConfig(t, pod)
	}
	if r.find("Secret", name+"-webhook") == nil {
		t.Fatalf("no Secret %s-webhook", name)
	}
	cm := r.get(t, "ConfigMap", name).(*corev1.ConfigMap)
	for file, data := range cm.Data {
		if strings.Contains(data, "whsec_") || strings.Contains(data, "webhook") {
			t.Errorf("ConfigMap %s holds webhook settings: %s", file, data)
		}
	}

	r = render(t, renderOpts{set: []string{"webhook.urls={http://app.example.com/hook}", "webhook.existingSecret=hooks", "webhook.secretKey=signing"}})
	_, name, tpl = r.workload(t)
	c = container(t, &tpl.Spec, "cascade")
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "CASCADE_WEBHOOK_KEY" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil || ref.Name != "hooks" || ref.Key != "signing" || r.find("Secret", name+"-webhook") != nil {
		t.Errorf("existing Secret: key from %+v", ref)
	}

	r = render(t, renderOpts{})
	_, name, tpl = r.workload(t)
	for _, e := range container(t, &tpl.Spec, "cascade").Env {
		if strings.HasPrefix(e.Name, "CASCADE_WEBHOOK") {
			t.Errorf("webhooks off, yet %s is set", e.Name)
		}
	}
	if r.find("Secret", name+"-webhook") != nil {
		t.Error("webhooks off, yet a webhook Secret")
	}
}

// TestWebhookRejected: URLs without a key, a short key, a URL that is not http(s) or holds a
// comma, a retry window that is not a duration fail at install, with a reason.
func TestWebhookRejected(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"webhook.urls={http://a/h}"}, "webhook.key"},
		{[]string{"webhook.urls={http://a/h}", "webhook.key=short"}, "key"},
		{[]string{"webhook.urls={ftp://a/h}", "webhook.key=" + testWebhookKey}, "urls"},
		{[]string{"webhook.urls[0]=http://a/h\\,b", "webhook.key=" + testWebhookKey}, "urls"},
		{[]string{"webhook.urls={http://a/h}", "webhook.key=" + testWebhookKey, "webhook.retryWindow=ten minutes"}, "retryWindow"},
	} {
		_, err := renderChart(renderOpts{set: tc.set})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %v: error %v, want one mentioning %q", tc.set, err, tc.want)
		}
	}
}
