package test

import (
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
)

// TestLint is `helm lint --strict` for the defaults and every example values file (CI also
// runs the helm binary itself).
func TestLint(t *testing.T) {
	for _, files := range [][]string{
		nil,
		{"examples/two-region-eu.yaml"},
		{"examples/two-region-us.yaml"},
		{"examples/external-nats.yaml"},
		{"examples/pod-services.yaml"},
	} {
		var paths []string
		for _, f := range files {
			paths = append(paths, chartDir+"/"+f)
		}
		vals, err := (&values.Options{ValueFiles: paths}).MergeValues(getter.Providers{})
		if err != nil {
			t.Fatal(err)
		}
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = "media"
		lint.KubeVersion = kubeVersion
		res := lint.Run([]string{chartDir}, vals)
		for _, m := range res.Messages {
			t.Logf("%v: %s", files, m)
		}
		if len(res.Errors) > 0 || res.TotalChartsLinted != 1 {
			t.Errorf("helm lint --strict %v: %v", files, res.Errors)
		}
	}
}
