package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// fakeClusterSecret stands in for an existing cluster Secret: every region shares it.
const fakeClusterSecret = "test-cluster-secret-0123456789abcdef-0123"

// Stand-ins for what the kubelet fills in at run time.
const (
	fakeHostIP   = "10.1.2.3"
	fakePodIP    = "10.244.1.7"
	fakeKey      = "test-key"
	fakeSecret   = "test-secret-0123456789abcdef"
	fakeNATSURL  = "nats://cascade:password@nats.example:4222"
	fakeCredsTxt = `-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2lnbmF0dXJl
------END NATS USER JWT------

-----BEGIN USER NKEY SEED-----
SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM
------END USER NKEY SEED------
`
)

// podEnv is the container's environment as the kubelet would build it for pod podName:
// literal values (with $(VAR) expanded), field references, and Secret keys (from the rendered
// Secret, else stand-ins).
func (r *rendered) podEnv(t *testing.T, c *corev1.Container, podName string) map[string]string {
	t.Helper()
	envs := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			envs[e.Name] = expandVars(e.Value, envs)
		case e.ValueFrom.FieldRef != nil:
			switch p := e.ValueFrom.FieldRef.FieldPath; p {
			case "metadata.name":
				envs[e.Name] = podName
			case "metadata.namespace":
				envs[e.Name] = r.namespace
			case "status.hostIP":
				envs[e.Name] = fakeHostIP
			case "status.podIP":
				envs[e.Name] = fakePodIP
			default:
				t.Fatalf("env %s: field %s not emulated", e.Name, p)
			}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Optional != nil && *ref.Optional && !r.hasSecretKey(ref.Name, ref.Key) {
				continue // the kubelet leaves an optional variable of a missing key unset
			}
			envs[e.Name] = r.secretValue(t, ref.Name, ref.Key)
		default:
			t.Fatalf("env %s: source %+v not emulated", e.Name, e.ValueFrom)
		}
	}
	return envs
}

// hasSecretKey tells whether a rendered Secret has key; an existing Secret (not rendered) has
// only the keys secretValue stands in for, and no optional ones.
func (r *rendered) hasSecretKey(name, key string) bool {
	if obj := r.find("Secret", name); obj != nil {
		_, ok := obj.(*corev1.Secret).Data[key]
		return ok
	}
	return key != r.value("clusterSecret.previousKey")
}

// secretValue is a key of a rendered Secret, or a stand-in for an existing Secret.
func (r *rendered) secretValue(t *testing.T, name, key string) string {
	t.Helper()
	if obj := r.find("Secret", name); obj != nil {
		s := obj.(*corev1.Secret)
		v, ok := s.Data[key]
		if !ok {
			t.Fatalf("Secret %s has no key %q", name, key)
		}
		return string(v)
	}
	switch {
	case key == r.value("auth.secretKey") || key == "api-secret":
		return fakeSecret
	case key == r.value("auth.keyKey") || key == "api-key":
		return fakeKey
	case key == r.value("nats.external.urlSecret.key") || key == "url":
		return fakeNATSURL
	case key == r.value("clusterSecret.key") || key == "cluster-secret":
		return fakeClusterSecret
	}
	t.Fatalf("no stand-in for key %q of existing Secret %s", key, name)
	return ""
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandVars expands $(VAR) like the kubelet does (unknown references stay as they are).
func expandVars(s string, envs map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := envs[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// podFS materialises the container's volume mounts under a temporary root: ConfigMaps from the
// rendered ones, Secrets from stand-ins. It returns a function that maps a path in the
// container to the local one.
func (r *rendered) podFS(t *testing.T, spec *corev1.PodSpec, c *corev1.Container) func(string) string {
	t.Helper()
	root := t.TempDir()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	var mounts []string
	local := map[string]string{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s: no volume %q", m.MountPath, m.Name)
		}
		dir := filepath.Join(root, m.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, m.MountPath)
		local[m.MountPath] = dir
		files := map[string]string{}
		switch {
		case v.ConfigMap != nil:
			cm := r.get(t, "ConfigMap", v.ConfigMap.Name).(*corev1.ConfigMap)
			for k, d := range cm.Data {
				files[k] = d
			}
		case v.Secret != nil:
			if len(v.Secret.Items) == 0 {
				t.Fatalf("volume %s: Secret %s mounted without items", v.Name, v.Secret.SecretName)
			}
			for _, it := range v.Secret.Items {
				files[it.Path] = fakeCredsTxt
				if d, ok := r.secretFiles[v.Secret.SecretName][it.Key]; ok {
					files[it.Path] = d
				}
			}
		case v.EmptyDir != nil:
		default:
			t.Fatalf("volume %s: source not emulated", v.Name)
		}
		for k, d := range files {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(d), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Longest mount path first: /etc/cascade-nats before /etc/cascade.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	mapPath := func(p string) string {
		for _, m := range mounts {
			if p == m || strings.HasPrefix(p, m+"/") {
				return local[m] + p[len(m):]
			}
		}
		return p
	}
	// Paths inside the config files point into the container too: one pass over all mounts
	// (longest first), so a path already mapped (under the temporary root in /tmp) is not
	// mapped again by the /tmp mount.
	var alts []string
	for _, mm := range mounts {
		alts = append(alts, regexp.QuoteMeta(mm))
	}
	mountRef := regexp.MustCompile(`(` + strings.Join(alts, "|") + `)(/|\b)`)
	for _, m := range mounts {
		entries, _ := os.ReadDir(local[m])
		for _, e := range entries {
			f := filepath.Join(local[m], e.Name())
			b, err := os.ReadFile(f)
			if err != nil || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			s := mountRef.ReplaceAllStringFunc(string(b), func(ref string) string {
				sub := mountRef.FindStringSubmatch(ref)
				return local[sub[1]] + sub[2]
			})
			if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return mapPath
}

// nodeCommand is the node container's command line for pod podName with paths mapped to
// the local copies, and its environment.
func (r *rendered) nodeCommand(t *testing.T, podName string) (args []string, envs map[string]string, configPath string) {
	t.Helper()
	_, _, tpl := r.workload(t)
	c := container(t, &tpl.Spec, "cascade")
	envs = r.podEnv(t, c, podName)
	mapPath := r.podFS(t, &tpl.Spec, c)
	if len(c.Command) != 0 {
		t.Fatalf("the node container overrides the image's entrypoint: %q", c.Command)
	}
	for i, a := range c.Args {
		a = mapPath(expandVars(a, envs))
		args = append(args, a)
		if i > 0 && c.Args[i-1] == "--config" {
			configPath = a
		}
	}
	if configPath == "" {
		t.Fatalf("node args %q have no --config", c.Args)
	}
	return args, envs, configPath
}

// checkNodeConfig runs `cascade node ... --check` as the pod would: Cascade's own loader
// (strict YAML, environment, flags, validation) must accept the rendered config.
func (r *rendered) checkNodeConfig(t *testing.T, podName string) {
	t.Helper()
	out, err := r.runCheck(t, podName)
	if err != nil {
		t.Fatalf("pod %s: cascade %s --check: %v\n%s", podName, strings.Join(r.lastArgs, " "), err, out)
	}
	if !strings.Contains(out, "config ok") {
		t.Fatalf("pod %s: --check printed %q, want \"config ok\"", podName, out)
	}
}

// runCheck runs the check and returns its output and error.
func (r *rendered) runCheck(t *testing.T, podName string) (string, error) {
	t.Helper()
	bin := cascadeBinary(t)
	args, envs, _ := r.nodeCommand(t, podName)
	r.lastArgs = args
	cmd := exec.Command(bin, append(args, "--check")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
	for k, v := range envs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// nodeConfig is the config file pod podName reads (from the rendered ConfigMap), parsed.
func (r *rendered) nodeConfig(t *testing.T, podName string) map[string]any {
	t.Helper()
	_, name, tpl := r.workload(t)
	c := container(t, &tpl.Spec, "cascade")
	envs := r.podEnv(t, c, podName)
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("node args %q have no --config", c.Args)
	}
	file := expandVars(c.Args[i+1], envs)
	if dir := filepath.Dir(file); dir != "/etc/cascade" {
		t.Fatalf("--config %s: not in the config volume /etc/cascade", file)
	}
	cm := r.get(t, "ConfigMap", name).(*corev1.ConfigMap)
	data, ok := cm.Data[filepath.Base(file)]
	if !ok {
		t.Fatalf("pod %s reads %s: ConfigMap %s has no key %s", podName, file, name, filepath.Base(file))
	}
	var m map[string]any
	if err := yaml.UnmarshalStrict([]byte(data), &m); err != nil {
		t.Fatalf("config of %s: %v", podName, err)
	}
	return m
}
