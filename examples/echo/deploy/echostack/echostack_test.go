package echostack

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"gopkg.in/yaml.v3"
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

// deploy runs Program under mocks with the stack's settings config.
func deploy(t *testing.T, config map[string]string) *mocks {
	t.Helper()
	m := &mocks{}
	if err := pulumi.RunErr(Program, pulumi.WithMocks("switchboard-echo", "dev", m), func(info *pulumi.RunInfo) {
		info.Config = config
	}); err != nil {
		t.Fatalf("program: %v", err)
	}
	return m
}

// images are the first container's image of each Deployment, by name.
func images(m *mocks) map[string]string {
	out := map[string]string{}
	for _, d := range m.of("apps/v1:Deployment") {
		c := d["spec"].ObjectValue()["template"].ObjectValue()["spec"].ObjectValue()["containers"].ArrayValue()[0].ObjectValue()
		out[name(d)] = c["image"].StringValue()
	}
	return out
}

// name is a Kubernetes object's metadata.name.
func name(inputs resource.PropertyMap) string {
	return inputs["metadata"].ObjectValue()["name"].StringValue()
}

// The echo server runs from its image behind the NGINX edge, through the
// blueprint's component.
func TestDeploysTheEchoImageBehindTheEdge(t *testing.T) {
	m := deploy(t, nil)
	images := images(m)
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
	hpas := deploy(t, nil).of("autoscaling/v2:HorizontalPodAutoscaler")
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
	m := deploy(t, nil)
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

// The stack's settings choose the images (the offline kind run gives the
// edge the NGINX image it built) and the edge's node port is the one
// infra/kind/cluster.yaml maps to Endpoint.
func TestSettingsChooseTheImagesAndTheEdgeListensOnTheMappedPort(t *testing.T) {
	m := deploy(t, map[string]string{
		"switchboard-echo:image":     "registry.example/echo:1",
		"switchboard-echo:edgeImage": "registry.example/nginx:1.30",
	})
	got := images(m)
	if got["echo"] != "registry.example/echo:1" || got["edge"] != "registry.example/nginx:1.30" {
		t.Errorf("Deployments run %v, want echo registry.example/echo:1 and edge registry.example/nginx:1.30", got)
	}
	var ports []float64
	for _, svc := range m.of("core/v1:Service") {
		for _, p := range svc["spec"].ObjectValue()["ports"].ArrayValue() {
			if np, ok := p.ObjectValue()["nodePort"]; ok {
				ports = append(ports, np.NumberValue())
			}
		}
	}
	if len(ports) != 1 || ports[0] != NodePort {
		t.Errorf("node ports %v, want the edge's alone, %d", ports, NodePort)
	}
}

// Endpoint is what works from the host: infra/kind/cluster.yaml maps
// NodePort to its port on the node the edge runs on, the one labelled
// ingress-ready (kind's configuration guide, "Extra Port Mappings"; the
// edge's nodeSelector, infra/edge).
func TestTheClusterFileMapsTheEdgeNodePortToTheEndpoint(t *testing.T) {
	b, err := os.ReadFile("../../../../infra/kind/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cluster struct {
		Nodes []struct {
			Labels            map[string]string
			ExtraPortMappings []struct {
				ContainerPort int `yaml:"containerPort"`
				HostPort      int `yaml:"hostPort"`
			} `yaml:"extraPortMappings"`
		}
	}
	if err := yaml.Unmarshal(b, &cluster); err != nil {
		t.Fatalf("infra/kind/cluster.yaml: %v", err)
	}
	u, err := url.Parse(Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var mapped []string
	for _, n := range cluster.Nodes {
		for _, m := range n.ExtraPortMappings {
			if m.ContainerPort == NodePort {
				mapped = append(mapped, fmt.Sprintf("host %d on a node labelled %v", m.HostPort, n.Labels))
				if n.Labels["ingress-ready"] == "true" && fmt.Sprint(m.HostPort) == u.Port() {
					return
				}
			}
		}
	}
	t.Errorf("infra/kind/cluster.yaml maps node port %d to %q: want host port %s on the ingress-ready node, Endpoint %s", NodePort, mapped, u.Port(), Endpoint)
}
