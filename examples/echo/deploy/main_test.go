package main

import (
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// mocks records what the program declares.
type mocks struct {
	mu        sync.Mutex
	resources []pulumi.MockResourceArgs
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resources = append(m.resources, args)
	return args.Name + "-id", args.Inputs, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) { return args.Args, nil }

// of are the inputs of the resources whose type ends in kind.
func (m *mocks) of(kind string) []resource.PropertyMap {
	var out []resource.PropertyMap
	for _, r := range m.resources {
		if strings.HasSuffix(r.TypeToken, ":"+kind) {
			out = append(out, r.Inputs)
		}
	}
	return out
}

func deploy(t *testing.T) *mocks {
	t.Helper()
	m := &mocks{}
	if err := pulumi.RunErr(program, pulumi.WithMocks("switchboard-echo", "dev", m)); err != nil {
		t.Fatalf("program: %v", err)
	}
	return m
}

// name is a Kubernetes object's metadata.name.
func name(inputs resource.PropertyMap) string {
	return inputs["metadata"].ObjectValue()["name"].StringValue()
}

// The echo server runs from its image behind the NGINX edge, through the
// blueprint's component.
func TestDeploysTheEchoImageBehindTheEdge(t *testing.T) {
	m := deploy(t)
	images := map[string]string{}
	for _, d := range m.of("apps/v1:Deployment") {
		c := d["spec"].ObjectValue()["template"].ObjectValue()["spec"].ObjectValue()["containers"].ArrayValue()[0].ObjectValue()
		images[name(d)] = c["image"].StringValue()
	}
	if images["echo"] != "switchboard/echo:dev" {
		t.Errorf("Deployment echo runs %q, want switchboard/echo:dev", images["echo"])
	}
	if !strings.HasPrefix(images["edge"], "nginxinc/nginx-unprivileged:") {
		t.Errorf("no NGINX edge: Deployments %v", images)
	}
	if len(m.of("index:Service")) != 1 {
		t.Error("not deployed through blueprint.Service")
	}
}

// The HPA scales the echo pods on the echo's gauge of open connections.
func TestScalesOnTheEchoGauge(t *testing.T) {
	hpas := deploy(t).of("autoscaling/v2:HorizontalPodAutoscaler")
	if len(hpas) != 1 {
		t.Fatalf("%d HPAs, want 1", len(hpas))
	}
	pods := hpas[0]["spec"].ObjectValue()["metrics"].ArrayValue()[0].ObjectValue()["pods"].ObjectValue()
	if got := pods["metric"].ObjectValue()["name"].StringValue(); got != "websocket_connections_active" {
		t.Errorf("HPA scales on %q, want the echo's websocket_connections_active", got)
	}
}

// No stores, and nothing cluster-wide that the dev stack already installed
// (Helm releases, prometheus-adapter), nor a Secret the echo has no use for.
func TestDeclaresNoStoresNorClusterServices(t *testing.T) {
	m := deploy(t)
	for _, kind := range []string{"apps/v1:StatefulSet", "helm.sh/v3:Release", "apiregistration.k8s.io/v1:APIService", "core/v1:Secret", "monitoring.coreos.com/v1:PrometheusRule"} {
		if n := len(m.of(kind)); n != 0 {
			t.Errorf("%d %s, want none", n, kind)
		}
	}
	for _, np := range m.of("networking.k8s.io/v1:NetworkPolicy") {
		if n := name(np); n == "redis" || n == "postgres" {
			t.Errorf("NetworkPolicy %s for a store the echo has not", n)
		}
	}
}
