// Package echostack is the echo example's Pulumi program: the echo server
// (examples/echo) on the dev stack's kind cluster through
// blueprint.Service, a service other than the chat server, with no Redis
// and no Postgres, scaled on its own gauge of open connections. It relies
// on what the dev stack installed in the cluster: its Prometheus (which
// scrapes the echo's pods), metrics-server and prometheus-adapter (which
// serves websocket_connections_active of every namespace to the HPA).
// examples/echo/deploy runs it with `pulumi up`; `make e2e` runs it inline
// through the Automation API (infra/e2e_echo_test.go).
package echostack

import (
	"cmp"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/switchboard-dev/switchboard/blueprint"
)

// NodePort is the echo edge's port on the kind node, which
// infra/kind/cluster.yaml maps to Endpoint's.
const (
	NodePort = 30081
	Endpoint = "http://localhost:8081"
)

// Defaults of the stack's settings image and edgeImage.
const (
	DefaultImage     = "switchboard/echo:dev"
	DefaultEdgeImage = "nginxinc/nginx-unprivileged:1.28.0-alpine"
)

// Program declares the service from the stack's settings (image,
// edgeImage, kubeContext) and exports its endpoint as echoUrl.
func Program(ctx *pulumi.Context) error {
	conf := config.New(ctx, "")
	svc, err := blueprint.NewService(ctx, "echo", Args(conf.Get("image"), conf.Get("edgeImage"), conf.Get("kubeContext")))
	if err != nil {
		return err
	}
	ctx.Export("echoUrl", svc.Endpoint)
	return nil
}

// Args is the service: every setting the blueprint has no default for.
// Empty arguments take the defaults above and the dev stack's context.
func Args(image, edgeImage, kubeContext string) blueprint.ServiceArgs {
	return blueprint.ServiceArgs{
		Namespace: "echo",
		App: blueprint.App{
			Name: "echo", Image: cmp.Or(image, DefaultImage),
			Resources:   blueprint.Resources{CPURequest: "50m", MemoryRequest: "32Mi", CPULimit: "500m", MemoryLimit: "128Mi"},
			MinReplicas: 2, MaxReplicas: 5,
			// The echo's gauge is the blueprint's default metric.
			Scaling:      blueprint.Scaling{PerPod: 1000, ScaleDownWindow: 5 * time.Minute},
			Drain:        blueprint.Drain{PreStop: 5 * time.Second, Delay: 5 * time.Second, Timeout: 10 * time.Second},
			PingInterval: 25 * time.Second,
		},
		// The dev stack's Prometheus: no rules, no dashboard.
		Observability: blueprint.Observability{PrometheusNamespace: "monitoring", DatasourceUID: "prometheus"},
		Target: blueprint.Kind{
			KubeContext: cmp.Or(kubeContext, "kind-switchboard"),
			Edge:        blueprint.Nginx{Image: cmp.Or(edgeImage, DefaultEdgeImage), Replicas: 1, NodePort: NodePort},
			Endpoint:    Endpoint,
		},
	}
}
