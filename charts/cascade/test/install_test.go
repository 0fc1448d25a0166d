package test

import (
	"fmt"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The installations beyond the generic checks: two regions, per-pod Services, autoscaling and
// monitoring, the config checksum, and the combinations the chart refuses.
func TestTwoRegions(t *testing.T) {
	regions := map[string]*rendered{
		"eu": render(t, renderOpts{release: "cascade-eu", namespace: "cascade", files: []string{"examples/two-region-eu.yaml"}}),
		"us": render(t, renderOpts{release: "cascade-us", namespace: "cascade", files: []string{"examples/two-region-us.yaml"}}),
	}
	cfgs := map[string]map[string]any{}
	pods := map[string]bool{}
	for region, r := range regions {
		_, name, tpl := r.workload(t)
		if got := tpl.Labels["cascade-sfu.io/region"]; got != region {
			t.Errorf("%s: pod label cascade-sfu.io/region = %q", region, got)
		}
		for _, o := range r.objects {
			acc := o.obj.(interface{ GetLabels() map[string]string })
			if acc.GetLabels()["cascade-sfu.io/region"] != region {
				t.Errorf("%s: %s/%s lacks the region label", region, o.kind, o.name)
			}
		}
		cfg := r.nodeConfig(t, name+"-0")
		cfgs[region] = cfg
		if cfg["region"] != region || cfg["nats-cluster-name"] != region {
			t.Errorf("%s: config region %v, NATS cluster %v", region, cfg["region"], cfg["nats-cluster-name"])
		}
		for _, p := range r.podNames(t) {
			if pods[p] {
				t.Errorf("pod name (node id, NATS server name) %s in both regions", p)
			}
			pods[p] = true
		}
		gw := r.get(t, "Service", name+"-gateway").(*corev1.Service)
		if gw.Spec.Type != corev1.ServiceTypeLoadBalancer || len(gw.Spec.Ports) != 1 || gw.Spec.Ports[0].Port != 7222 ||
			gw.Spec.Ports[0].TargetPort.StrVal != "nats-gateway" {
			t.Errorf("%s: gateway Service %+v", region, gw.Spec)
		}
	}
	// Each region's gateways name the other region's cluster.
	for region, cfg := range cfgs {
		other := map[string]string{"eu": "us", "us": "eu"}[region]
		gws, err := parseGateways(str(cfg["nats-gateways"]))
		if err != nil {
			t.Fatalf("%s: nats-gateways: %v", region, err)
		}
		var got []string
		for _, g := range gws {
			for _, u := range g.URLs {
				got = append(got, g.Name+"="+u.String())
			}
		}
		if len(gws) != 1 || gws[0].Name != cfgs[other]["nats-cluster-name"] || len(gws[0].URLs) != 1 {
			t.Errorf("%s: gateways %q, want one to NATS cluster %v", region, got, cfgs[other]["nats-cluster-name"])
		}
	}
	// The embedded NATS servers accept the configuration and form a supercluster: run both
	// regions' servers here, the gateway URLs pointed at each other's listeners.
	connectGateways(t, cfgs["eu"], cfgs["us"])
}

func TestPodServices(t *testing.T) {
	r := render(t, renderOpts{files: []string{"examples/pod-services.yaml"}})
	_, name, tpl := r.workload(t)
	ips := r.value("media.service.publicIPs").([]any)
	if !strings.Contains(strings.Join(container(t, &tpl.Spec, "cascade").Args, " "), "/etc/cascade/$(POD_NAME).yaml") {
		t.Errorf("per-pod public IPs, but the pods do not read a per-pod config")
	}
	for i := range r.podCount() {
		pod := fmt.Sprintf("%s-%d", name, i)
		svc := r.get(t, "Service", fmt.Sprintf("%s-media-%d", name, i)).(*corev1.Service)
		if svc.Spec.Selector["statefulset.kubernetes.io/pod-name"] != pod {
			t.Errorf("Service %s selects %v, want pod %s only", svc.Name, svc.Spec.Selector, pod)
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerIP != ips[i] ||
			svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			t.Errorf("Service %s: type %s loadBalancerIP %q policy %s", svc.Name, svc.Spec.Type, svc.Spec.LoadBalancerIP, svc.Spec.ExternalTrafficPolicy)
		}
		cfg := r.nodeConfig(t, pod)
		if cfg["public-ip"] != ips[i] {
			t.Errorf("pod %s advertises %v, its Service's address is %v", pod, cfg["public-ip"], ips[i])
		}
		want := nodePorts(r, cfg)
		for _, p := range svc.Spec.Ports {
			k := fmt.Sprintf("%d/%s", p.TargetPort.IntValue(), p.Protocol)
			port := p.TargetPort.IntValue()
			if p.Name == "turn-tls" {
				port = intVal(r.value("turn.tls.servicePort")) // 443 in front of the unprivileged port
			}
			if !want[k] || int(p.Port) != port {
				t.Errorf("Service %s port %+v: want the node's own port numbers", svc.Name, p)
			}
			delete(want, k)
		}
		if cfg["turn-host"] != fmt.Sprintf("turn-%d.example.com:443", i) || cfg["turn-cert"] == nil {
			t.Errorf("pod %s: turn-host %v, turn-cert %v", pod, cfg["turn-host"], cfg["turn-cert"])
		}
		if len(want) > 0 {
			t.Errorf("Service %s lacks ports %v", svc.Name, want)
		}
	}
	if r.find("Service", fmt.Sprintf("%s-media-%d", name, r.podCount())) != nil {
		t.Errorf("a media Service beyond the pods")
	}
}

func (r *rendered) httpPort() int { return intVal(r.value("node.httpPort")) }

// nodePorts are the ports a node with config cfg serves clients and peers on, as
// "port/PROTOCOL": HTTP, relay, the media UDP range, ICE-TCP and the TURN listeners that are on.
func nodePorts(r *rendered, cfg map[string]any) map[string]bool {
	want := map[string]bool{
		fmt.Sprintf("%d/TCP", r.httpPort()):                 true,
		strings.TrimPrefix(str(cfg["relay"]), ":") + "/UDP": true,
	}
	for w := range intVal(cfg["workers"]) {
		want[fmt.Sprintf("%d/UDP", intVal(cfg["udp-port"])+w)] = true
	}
	for flag, proto := range map[string]string{"tcp-port": "TCP", "turn-udp-port": "UDP", "turn-tcp-port": "TCP", "turn-tls-port": "TCP"} {
		if port := intVal(cfg[flag]); port > 0 {
			want[fmt.Sprintf("%d/%s", port, proto)] = true
		}
	}
	return want
}

func TestAutoscalingMonitoringBots(t *testing.T) {
	r := render(t, valueSets[len(valueSets)-1].opts) // "everything"
	_, name, _ := r.workload(t)
	sts := r.get(t, "StatefulSet", name).(*appsv1.StatefulSet)
	if sts.Spec.Replicas != nil {
		t.Errorf("autoscaled StatefulSet sets replicas %d: every upgrade would reset the HPA's choice", *sts.Spec.Replicas)
	}
	hpa := r.get(t, "HorizontalPodAutoscaler", name).(*autoscalingv2.HorizontalPodAutoscaler)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "StatefulSet" || ref.Name != name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v", ref)
	}
	if hpa.Spec.MaxReplicas != 6 || hpa.Spec.Behavior == nil || hpa.Spec.Behavior.ScaleDown == nil {
		t.Errorf("HPA spec %+v", hpa.Spec)
	}

	sm := r.get(t, "ServiceMonitor", name).(*monitoringv1.ServiceMonitor)
	headless := r.get(t, "Service", name+"-headless").(*corev1.Service)
	client := r.get(t, "Service", name).(*corev1.Service)
	sel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
	if !sel.Matches(labels.Set(headless.Labels)) || sel.Matches(labels.Set(client.Labels)) {
		t.Errorf("ServiceMonitor selector %v: want the headless Service only (draining nodes stay scraped, no double scrape)", sel)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
	}

	var job *batchv1.Job
	for _, o := range r.ofKind("Job") {
		job = o.obj.(*batchv1.Job)
		if !o.hook || job.Annotations["helm.sh/hook"] != "test" {
			t.Errorf("bots Job %s: hook %v annotations %v, want a helm test hook", o.name, o.hook, job.Annotations)
		}
	}
	if job == nil {
		t.Fatalf("bots.enabled but no Job")
	}
	bc := container(t, &job.Spec.Template.Spec, "bots")
	args := strings.Join(bc.Args, " ")
	var urls []string
	for i := range intVal(r.value("autoscaling.minReplicas")) {
		urls = append(urls, fmt.Sprintf("ws://%s-%d.%s-headless.%s.svc:%d", name, i, name, r.namespace, r.httpPort()))
	}
	for _, want := range []string{"bots --url " + strings.Join(urls, ","), "--subscribers 20", "--duration 30s", "--quiet"} {
		if !strings.Contains(args, want) {
			t.Errorf("bots args %q lack %q", args, want)
		}
	}
	for _, v := range []string{"CASCADE_API_KEY", "CASCADE_API_SECRET"} {
		if e := env(bc, v); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != name+"-api" {
			t.Errorf("bots %s = %+v", v, e)
		}
	}
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever || job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 {
		t.Errorf("bots Job retries: the exit code is the verdict")
	}
	if !strings.Contains(r.notes, "helm test "+r.release) {
		t.Errorf("NOTES do not say how to run the bots:\n%s", r.notes)
	}
	if !strings.Contains(strings.Join(job.Spec.Template.Spec.InitContainers[0].Command, " "), "/readyz") {
		t.Errorf("the bots do not wait for ready nodes")
	}

	// bots.hook "": a plain Job per revision.
	r = render(t, renderOpts{set: []string{"bots.enabled=true", "bots.hook="}})
	jobs := r.ofKind("Job")
	if len(jobs) != 1 || jobs[0].hook || jobs[0].name != "cascade-bots-1" {
		t.Errorf("plain bots Job: %+v", r.names())
	}
	if !strings.Contains(r.notes, "logs -f job/cascade-bots-1") {
		t.Errorf("NOTES do not say where the report is:\n%s", r.notes)
	}
}

// TestChecksum: a config change rolls the pods, anything else does not.
func TestChecksum(t *testing.T) {
	sum := func(set ...string) string {
		_, _, tpl := render(t, renderOpts{set: set}).workload(t)
		return tpl.Annotations["checksum/config"]
	}
	base := sum()
	if sum("workload.replicas=5") != base || sum("podDisruptionBudget.maxUnavailable=2") != base {
		t.Errorf("scaling changed the config checksum: every node would restart")
	}
	if sum("node.logLevel=debug") == base || sum("node.extraConfig.keyframe-interval=250ms") == base {
		t.Errorf("a config change kept the checksum: the pods would not pick it up")
	}
}

// TestRejected: combinations that cannot work fail at install, with a reason.
func TestRejected(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"workload.kind=DaemonSet", "media.hostNetwork=false"}, "DaemonSet needs media.hostNetwork"},
		{[]string{"workload.kind=Deployment", "media.hostNetwork=false"}, "Deployment needs media.hostNetwork"},
		{[]string{"nats.gateway.enabled=true"}, "needs nats.gateway.remotes"},
		{[]string{"nats.external.url=nats://n:4222", "nats.gateway.enabled=true", "nats.gateway.remotes[0].name=x", "nats.gateway.remotes[0].urls[0]=nats://x:7222"}, "with an external NATS"},
		{[]string{"media.publicIPFrom=value"}, "media.publicIP is empty"},
		{[]string{"media.hostNetwork=false", "media.service.publicIPs[0]=192.0.2.1"}, "give one per pod"},
		{[]string{"media.relayPort=7883"}, "ports overlap"},
		{[]string{"turn.udpPort=3478"}, "ports overlap"},
		{[]string{"media.tcpPort=7882"}, "ports overlap"},
		{[]string{"turn.tls.host=turn-%d.example.com"}, "per-pod Services"},
		{[]string{"auth.apiSecret=short"}, "apiSecret"},
		{[]string{"region=EU West"}, "region"},
		{[]string{"node.wrokers=3"}, "wrokers"},
		{[]string{"workload.kind=ReplicaSet"}, "kind"},
		{[]string{"nats.gateway.enabled=true", "nats.gateway.remotes[0].name=us", "nats.gateway.remotes[0].urls[0]=http://x"}, "urls"},
		{[]string{"autoscaling.enabled=true", "workload.kind=DaemonSet"}, "autoscaling"},
	} {
		_, err := renderChart(renderOpts{set: tc.set})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %v: error %v, want one mentioning %q", tc.set, err, tc.want)
		}
	}
}

// TestCheckRejectsBadConfig: the node's loader is strict, so the config check above means
// something: a key the node does not know fails it.
func TestCheckRejectsBadConfig(t *testing.T) {
	r := render(t, renderOpts{set: []string{"node.extraConfig.no-such-flag=1"}})
	out, err := r.runCheck(t, "cascade-0")
	if err == nil || !strings.Contains(out, "no-such-flag") {
		t.Fatalf("--check accepted an unknown key (err %v):\n%s", err, out)
	}
}

func TestNotes(t *testing.T) {
	r := render(t, renderOpts{})
	for _, want := range []string{"kubectl -n media get pods", "/cluster", "cascade token --room demo", "cascade-headless", "docs/DEPLOYMENT.md", "generated", "TCP 7879 (ice-tcp) TCP 3478 (turn-tcp)"} {
		if !strings.Contains(r.notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, r.notes)
		}
	}
}
