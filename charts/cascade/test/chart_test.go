package test

import (
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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
		str(r.value("drain.cascade")) + " token --admin --ttl " + fmt.Sprintf("%ds", timeout+60),
		`--header "Authorization: Bearer ${tok}" --post-data`,
		`--header "Authorization: Bearer ${tok}" http://127.0.0.1:`,
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
