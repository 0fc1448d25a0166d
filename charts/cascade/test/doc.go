// Package test holds the Cascade Helm chart's tests: lint, render with the Helm SDK for several
// values sets, strict decoding of every manifest into typed Kubernetes objects, the rendered node
// config checked by Cascade's own loader (`cascade node --check`), the NATS gateway config
// checked by the NATS server, the cluster Secret (kept on upgrade through Helm's lookup against a
// fake API server) and NATS TLS, and the preStop drain hook run against a fake node.
//
// It is its own Go module so that Helm and client-go stay out of the product's go.mod:
//
//	cd charts/cascade/test && go test ./...
package test
