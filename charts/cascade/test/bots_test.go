package test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
)

// TestBotsJob: the bots' arguments are ones `cascade bots` accepts, and the Job's readiness wait
// holds the bots back until the nodes answer /readyz.
func TestBotsJob(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer node.Close()
	url := strings.Replace(node.URL, "http://", "ws://", 1)
	r := render(t, renderOpts{set: []string{"bots.enabled=true", "bots.urls[0]=" + url, "bots.extraArgs[0]=--video=false", "bots.simulcast=true",
		"drain.busybox=" + busyboxShim(t)}})
	job := r.ofKind("Job")[0].obj.(*batchv1.Job)
	spec := &job.Spec.Template.Spec

	// `cascade bots ARGS -h` parses every flag (an unknown one or a bad value fails) and stops.
	bots := container(t, spec, "bots")
	if !strings.Contains(strings.Join(bots.Args, " "), "--url "+url) {
		t.Errorf("bots.urls not used: %q", bots.Args)
	}
	cmd := exec.Command(cascadeBinary(t), append(bots.Args, "-h")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("cascade %q: %v\n%s", bots.Args, err, out)
	}

	// The wait: blocks while the node is not ready, ends once it is.
	wait := spec.InitContainers[0].Command
	time.AfterFunc(1500*time.Millisecond, func() { ready.Store(true) })
	start := time.Now()
	run := exec.Command(wait[0], wait[1:]...)
	run.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("readiness wait: %v\n%s", err, out)
	}
	if took := time.Since(start); took < time.Second || !strings.Contains(string(out), "waiting for") {
		t.Errorf("readiness wait ended after %v without waiting:\n%s", took, out)
	}
}
