package test

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// valueSets are the installations every generic check runs on.
var valueSets = []struct {
	name string
	opts renderOpts
}{
	{"default", renderOpts{}},
	{"two-region-eu", renderOpts{release: "cascade-eu", files: []string{"examples/two-region-eu.yaml"}}},
	{"two-region-us", renderOpts{release: "cascade-us", files: []string{"examples/two-region-us.yaml"}}},
	{"external-nats", renderOpts{files: []string{"examples/external-nats.yaml"}}},
	{"external-nats-url-secret", renderOpts{set: []string{"nats.external.urlSecret.name=nats-url", "auth.existingSecret=keys"}}},
	{"hostnetwork-off", renderOpts{files: []string{"examples/pod-services.yaml"}}},
	{"hostnetwork-off-clusterip", renderOpts{set: []string{"media.hostNetwork=false", "media.service.type=ClusterIP", "workload.replicas=2"}}},
	{"deployment", renderOpts{set: []string{"workload.kind=Deployment", "region=ap-south"}}},
	{"daemonset", renderOpts{set: []string{"workload.kind=DaemonSet", "media.publicIPFrom=none"}}},
	{"public-ip-value", renderOpts{set: []string{"workload.replicas=1", "media.publicIPFrom=value", "media.publicIP=198.51.100.7"}}},
	{"everything", renderOpts{release: "big", namespace: "rtc", set: []string{
		"region=us-west", "autoscaling.enabled=true", "autoscaling.maxReplicas=6", "metrics.serviceMonitor.enabled=true",
		"bots.enabled=true", "node.pprof=true", "auth.apiKey=prod", "auth.apiSecret=0123456789abcdef0123",
		"drain.timeoutSeconds=120", "node.workers=4", "node.httpPort=8080", "media.udpPort=40000",
	}}},
}

func TestRender(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			r := render(t, vs.opts)
			checkNodeWorkload(t, r)
			for _, pod := range r.podNames(t) {
				r.checkNodeConfig(t, pod)
			}
		})
	}
}

// podNames are names the node pods get (StatefulSet: every ordinal).
func (r *rendered) podNames(t *testing.T) []string {
	kind, name, _ := r.workload(t)
	if kind != "StatefulSet" {
		return []string{name + "-5d8f7c9b6-x2k4q"}
	}
	var out []string
	for i := range r.podCount() {
		out = append(out, fmt.Sprintf("%s-%d", name, i))
	}
	return out
}

func (r *rendered) podCount() int {
	n := intVal(r.value("workload.replicas"))
	if r.value("autoscaling.enabled") == true {
		n = max(n, intVal(r.value("autoscaling.maxReplicas")))
	}
	return n
}

func intVal(v any) int {
	switch x := v.(type) {
	case int:
		return x
	case int64:
		return int(x)
	case float64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// checkNodeWorkload asserts what operators depend on, for any values set.
func checkNodeWorkload(t *testing.T, r *rendered) {
	t.Helper()
	kind, name, tpl := r.workload(t)
	spec := &tpl.Spec
	c := container(t, spec, "cascade")
	cfg := r.nodeConfig(t, r.podNames(t)[0])
	hostNet := r.value("media.hostNetwork") == true
	httpPort := intVal(r.value("node.httpPort"))
	selector := labels.SelectorFromSet(selectorOf(t, r))
	if !selector.Matches(labels.Set(tpl.Labels)) {
		t.Errorf("pod labels %v do not match the selector %v", tpl.Labels, selector)
	}
	if wantKind := str(r.value("workload.kind")); kind != wantKind {
		t.Errorf("workload kind %s, want %s", kind, wantKind)
	}

	// The config: HTTP port and ports as the container declares them.
	if got := str(cfg["http"]); got != fmt.Sprintf(":%d", httpPort) {
		t.Errorf("config http = %q, want :%d", got, httpPort)
	}
	if p := port(c, "http"); p == nil || int(p.ContainerPort) != httpPort || p.Protocol != corev1.ProtocolTCP {
		t.Errorf("container port http = %+v, want %d/TCP", p, httpPort)
	}
	if p := port(c, "relay"); p == nil || str(cfg["relay"]) != fmt.Sprintf(":%d", p.ContainerPort) || p.Protocol != corev1.ProtocolUDP {
		t.Errorf("container port relay = %+v, config relay = %v", p, cfg["relay"])
	}
	workers := intVal(cfg["workers"])
	if workers < 1 || workers != intVal(r.value("node.workers")) {
		t.Errorf("config workers = %v, want node.workers %v", cfg["workers"], r.value("node.workers"))
	}
	for i := range workers {
		p := port(c, fmt.Sprintf("media-%d", i))
		if p == nil || int(p.ContainerPort) != intVal(cfg["udp-port"])+i || p.Protocol != corev1.ProtocolUDP {
			t.Errorf("media port %d = %+v, want %d/UDP", i, p, intVal(cfg["udp-port"])+i)
		}
	}
	names, numbers := map[string]bool{}, map[int32]bool{}
	for _, p := range c.Ports {
		if names[p.Name] || numbers[p.ContainerPort] {
			// The ports list merges by containerPort: two entries with one number (TCP and UDP)
			// break upgrades.
			t.Errorf("port %s/%d declared twice", p.Name, p.ContainerPort)
		}
		names[p.Name], numbers[p.ContainerPort] = true, true
		switch {
		case hostNet && p.HostPort != p.ContainerPort:
			t.Errorf("hostNetwork: port %s hostPort %d, want it written out as %d", p.Name, p.HostPort, p.ContainerPort)
		case !hostNet && p.HostPort != 0:
			t.Errorf("no hostNetwork: port %s has a stale hostPort %d", p.Name, p.HostPort)
		}
	}

	// Probes.
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz", c)
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz", c)
	checkProbe(t, "startup", c.StartupProbe, "/healthz", c)

	// Draining: preStop, grace period = deadline + margin, the node's own deadline.
	timeout := intVal(r.value("drain.timeoutSeconds"))
	if got := str(cfg["drain-timeout"]); got != fmt.Sprintf("%ds", timeout) {
		t.Errorf("config drain-timeout = %q, want %ds", got, timeout)
	}
	margin := intVal(r.value("drain.graceMarginSeconds"))
	if g := spec.TerminationGracePeriodSeconds; g == nil || int(*g) != timeout+margin || margin < 10 {
		t.Errorf("terminationGracePeriodSeconds = %v, want drain %d + margin %d (>= 10 s for the HTTP shutdown)", g, timeout, margin)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatalf("no preStop exec hook")
	}
	cmd := c.Lifecycle.PreStop.Exec.Command
	script := strings.Join(cmd, " ")
	for _, want := range []string{
		str(r.value("drain.busybox")),
		fmt.Sprintf("http://127.0.0.1:%d/admin/drain", httpPort),
		`--header "Authorization: Bearer ${CASCADE_API_SECRET}"`,
		"--post-data",
		fmt.Sprintf("+ %d ))", timeout),
	} {
		if !strings.Contains(script, want) {
			t.Errorf("preStop %q lacks %q", cmd, want)
		}
	}

	// Identity and secrets.
	if e := env(c, "CASCADE_NODE_ID"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("CASCADE_NODE_ID = %+v, want the pod name", e)
	}
	secretName := str(r.value("auth.existingSecret"))
	if secretName == "" {
		secretName = name + "-api"
		s := r.get(t, "Secret", secretName).(*corev1.Secret)
		if len(s.Data[str(r.value("auth.secretKey"))]) < 16 || len(s.Data[str(r.value("auth.keyKey"))]) == 0 {
			t.Errorf("Secret %s: key pair missing or secret short: %v", secretName, s.Data)
		}
	} else if r.find("Secret", secretName) != nil {
		t.Errorf("auth.existingSecret %s: the chart must not create it", secretName)
	}
	for v, key := range map[string]string{"CASCADE_API_KEY": str(r.value("auth.keyKey")), "CASCADE_API_SECRET": str(r.value("auth.secretKey"))} {
		e := env(c, v)
		if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != secretName || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("%s = %+v, want Secret %s key %s", v, e, secretName, key)
		}
	}
	cm := r.get(t, "ConfigMap", name).(*corev1.ConfigMap)
	secret := r.podEnv(t, c, "x")["CASCADE_API_SECRET"]
	for k, d := range cm.Data {
		if strings.Contains(d, "api-secret") || strings.Contains(d, "api-key") || strings.Contains(d, secret) {
			t.Errorf("ConfigMap key %s carries the API key pair", k)
		}
	}
	if sum := tpl.Annotations["checksum/config"]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		t.Errorf("checksum/config annotation = %q", sum)
	}

	// Public address.
	pub := env(c, "CASCADE_PUBLIC_IP")
	switch from := str(r.value("media.publicIPFrom")); {
	case hostNet && from == "hostIP":
		if pub == nil || pub.ValueFrom == nil || pub.ValueFrom.FieldRef == nil || pub.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
			t.Errorf("CASCADE_PUBLIC_IP = %+v, want status.hostIP", pub)
		}
	case hostNet && from == "value":
		if pub != nil || str(cfg["public-ip"]) != str(r.value("media.publicIP")) {
			t.Errorf("publicIPFrom value: env %+v, config public-ip %v", pub, cfg["public-ip"])
		}
	default:
		if pub != nil {
			t.Errorf("CASCADE_PUBLIC_IP set: %+v", pub)
		}
	}

	// Networking mode.
	if hostNet {
		if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("hostNetwork %v dnsPolicy %q, want true and ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
		}
		if kind != "DaemonSet" {
			checkHardAntiAffinity(t, spec, tpl.Labels)
		}
		if kind == "Deployment" {
			d := r.get(t, "Deployment", name).(*appsv1.Deployment)
			if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 {
				t.Errorf("hostNetwork Deployment: a surge pod could never schedule: strategy %+v", d.Spec.Strategy)
			}
		}
	} else if spec.HostNetwork {
		t.Errorf("media.hostNetwork false but the pod uses the host network")
	}

	// Security: non-root, read-only root with a writable /tmp (the embedded NATS store).
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pod securityContext %+v: not runAsNonRoot", sc)
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		tmp := false
		for _, m := range c.VolumeMounts {
			tmp = tmp || m.MountPath == "/tmp"
		}
		if !tmp {
			t.Errorf("read-only root filesystem without a /tmp volume")
		}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("the nodes need no Kubernetes API token: automountServiceAccountToken should be false")
	}

	// PodDisruptionBudget.
	pdb := r.get(t, "PodDisruptionBudget", name).(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != str(r.value("podDisruptionBudget.maxUnavailable")) {
		t.Errorf("PDB maxUnavailable = %v", pdb.Spec.MaxUnavailable)
	}
	if pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB minAvailable set: with one replica it would block every drain")
	}
	if s := pdb.Spec.Selector; s == nil || !labels.SelectorFromSet(s.MatchLabels).Matches(labels.Set(tpl.Labels)) {
		t.Errorf("PDB selector %v does not select the node pods", s)
	}

	// Services.
	headlessName := name + "-headless"
	for _, o := range r.ofKind("Service") {
		svc := o.obj.(*corev1.Service)
		if !strings.HasPrefix(svc.Name, name) {
			t.Errorf("Service %s: not named after the release", svc.Name)
		}
		sel := maps.Clone(svc.Spec.Selector)
		delete(sel, "statefulset.kubernetes.io/pod-name") // per-pod Services; set by the StatefulSet controller
		if !labels.SelectorFromSet(sel).Matches(labels.Set(tpl.Labels)) {
			t.Errorf("Service %s selects %v: not the node pods", svc.Name, svc.Spec.Selector)
		}
		for _, sp := range svc.Spec.Ports {
			if sp.TargetPort.Type == intstr.String {
				if p := port(c, sp.TargetPort.StrVal); p == nil || p.Protocol != sp.Protocol {
					t.Errorf("Service %s port %s targets %q: no such %s container port", svc.Name, sp.Name, sp.TargetPort.StrVal, sp.Protocol)
				}
			} else if !numbers[int32(sp.TargetPort.IntValue())] {
				t.Errorf("Service %s port %s targets %d: not a container port", svc.Name, sp.Name, sp.TargetPort.IntValue())
			}
		}
	}
	client := r.get(t, "Service", name).(*corev1.Service)
	if len(client.Spec.Ports) != 1 || client.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("client Service ports %+v, want http only", client.Spec.Ports)
	}
	headless := r.get(t, "Service", headlessName).(*corev1.Service)
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("headless Service: clusterIP %q publishNotReadyAddresses %v", headless.Spec.ClusterIP, headless.Spec.PublishNotReadyAddresses)
	}
	if kind == "StatefulSet" {
		if sts := r.get(t, "StatefulSet", name).(*appsv1.StatefulSet); sts.Spec.ServiceName != headlessName {
			t.Errorf("StatefulSet serviceName %q, want %q", sts.Spec.ServiceName, headlessName)
		}
	}

	// NATS.
	external := str(r.value("nats.external.url")) != "" || str(r.value("nats.external.urlSecret.name")) != ""
	if external {
		checkExternalNATS(t, r, c, cfg)
	} else {
		checkEmbeddedNATS(t, r, kind, name, c, cfg)
	}

	// Region: on every node resource and in the config.
	if region := str(r.value("region")); region != "" {
		if tpl.Labels["cascade-sfu.io/region"] != region || str(cfg["region"]) != region {
			t.Errorf("region %s: pod label %q, config %v", region, tpl.Labels["cascade-sfu.io/region"], cfg["region"])
		}
	}
}

// selectorOf is the node workload's selector.
func selectorOf(t *testing.T, r *rendered) map[string]string {
	t.Helper()
	kind, name, _ := r.workload(t)
	switch w := r.get(t, kind, name).(type) {
	case *appsv1.StatefulSet:
		return w.Spec.Selector.MatchLabels
	case *appsv1.Deployment:
		return w.Spec.Selector.MatchLabels
	case *appsv1.DaemonSet:
		return w.Spec.Selector.MatchLabels
	}
	return nil
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string, c *corev1.Container) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: %+v, want HTTP GET %s", what, p, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "http" || port(c, "http") == nil {
		t.Errorf("%s probe: GET %s on port %s, want %s on the http port", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// checkHardAntiAffinity: at most one node pod per Kubernetes node.
func checkHardAntiAffinity(t *testing.T, spec *corev1.PodSpec, podLabels map[string]string) {
	t.Helper()
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("hostNetwork without pod anti-affinity")
		return
	}
	for _, term := range spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil &&
			labels.SelectorFromSet(term.LabelSelector.MatchLabels).Matches(labels.Set(podLabels)) {
			return
		}
	}
	t.Errorf("no required anti-affinity term on kubernetes.io/hostname selecting the node pods: %+v", spec.Affinity.PodAntiAffinity)
}

func checkEmbeddedNATS(t *testing.T, r *rendered, kind, name string, c *corev1.Container, cfg map[string]any) {
	t.Helper()
	clusterPort := intVal(r.value("nats.embedded.clusterPort"))
	clientPort := intVal(r.value("nats.embedded.clientPort"))
	if str(cfg["nats"]) != "" {
		t.Errorf("embedded NATS but config nats = %v", cfg["nats"])
	}
	if got := str(cfg["nats-listen"]); got != fmt.Sprintf("0.0.0.0:%d", clientPort) {
		t.Errorf("nats-listen = %q", got)
	}
	if got := str(cfg["nats-cluster"]); got != fmt.Sprintf("0.0.0.0:%d", clusterPort) {
		t.Errorf("nats-cluster = %q", got)
	}
	for n, want := range map[string]int{"nats": clientPort, "nats-route": clusterPort} {
		if p := port(c, n); p == nil || int(p.ContainerPort) != want || p.Protocol != corev1.ProtocolTCP {
			t.Errorf("container port %s = %+v, want %d/TCP", n, p, want)
		}
	}
	routes := strings.Split(str(cfg["nats-routes"]), ",")
	headless := name + "-headless"
	if kind == "StatefulSet" {
		if len(routes) != r.podCount() {
			t.Errorf("%d routes for %d pods: %q", len(routes), r.podCount(), routes)
		}
		for i, rt := range routes {
			if want := fmt.Sprintf("nats-route://%s-%d.%s.%s.svc:%d", name, i, headless, r.namespace, clusterPort); rt != want {
				t.Errorf("route %d = %q, want %q", i, rt, want)
			}
		}
	} else if want := fmt.Sprintf("nats-route://%s.%s.svc:%d", headless, r.namespace, clusterPort); len(routes) != 1 || routes[0] != want {
		t.Errorf("routes %q, want the headless Service %q", routes, want)
	}
	wantName := str(r.value("nats.clusterName"))
	if wantName == "" {
		wantName = str(r.value("region"))
	}
	if wantName == "" {
		wantName = "cascade"
	}
	if got := str(cfg["nats-cluster-name"]); got != wantName {
		t.Errorf("nats-cluster-name = %q, want %q", got, wantName)
	}
	// The embedded server accepts the cluster (and gateway) configuration.
	if _, err := natsOptions(cfg, "check-0"); err != nil {
		t.Errorf("NATS server options: %v", err)
	}
	if r.value("nats.gateway.enabled") == true {
		gp := intVal(r.value("nats.gateway.port"))
		if p := port(c, "nats-gateway"); p == nil || int(p.ContainerPort) != gp {
			t.Errorf("container port nats-gateway = %+v, want %d", p, gp)
		}
		if got := str(cfg["nats-gateway"]); got != fmt.Sprintf("0.0.0.0:%d", gp) {
			t.Errorf("nats-gateway = %q", got)
		}
	} else if cfg["nats-gateway"] != nil || cfg["nats-gateways"] != nil {
		t.Errorf("gateways off but config has %v / %v", cfg["nats-gateway"], cfg["nats-gateways"])
	}
}

func checkExternalNATS(t *testing.T, r *rendered, c *corev1.Container, cfg map[string]any) {
	t.Helper()
	for _, k := range []string{"nats-cluster", "nats-routes", "nats-gateway", "nats-gateways", "nats-cluster-name"} {
		if cfg[k] != nil {
			t.Errorf("external NATS but config has %s: %v", k, cfg[k])
		}
	}
	for _, n := range []string{"nats", "nats-route", "nats-gateway"} {
		if port(c, n) != nil {
			t.Errorf("external NATS but the container declares port %s", n)
		}
	}
	if u := str(r.value("nats.external.url")); u != "" && str(cfg["nats"]) != u {
		t.Errorf("config nats = %v, want %s", cfg["nats"], u)
	}
	if s := str(r.value("nats.external.urlSecret.name")); s != "" {
		e := env(c, "CASCADE_NATS")
		if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != s {
			t.Errorf("CASCADE_NATS = %+v, want from Secret %s", e, s)
		}
	}
	if s := str(r.value("nats.external.credentialsSecret.name")); s != "" {
		key := str(r.value("nats.external.credentialsSecret.key"))
		creds := str(cfg["nats-creds"])
		var mount *corev1.VolumeMount
		for i, m := range c.VolumeMounts {
			if strings.HasPrefix(creds, m.MountPath+"/") {
				mount = &c.VolumeMounts[i]
			}
		}
		_, _, tpl := r.workload(t)
		ok := false
		if mount != nil {
			for _, v := range tpl.Spec.Volumes {
				if v.Name == mount.Name && v.Secret != nil && v.Secret.SecretName == s {
					for _, it := range v.Secret.Items {
						ok = ok || (it.Key == key && mount.MountPath+"/"+it.Path == creds)
					}
				}
			}
		}
		if !ok {
			t.Errorf("nats-creds %q is not key %s of Secret %s mounted in the container", creds, key, s)
		}
	}
}

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
