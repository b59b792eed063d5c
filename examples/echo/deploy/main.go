// Command deploy puts the echo server (examples/echo) on the dev stack's
// kind cluster through blueprint.Service: a service other than the chat
// server, with no Redis and no Postgres, scaled on its own gauge of open
// connections. It relies on what the dev stack installed in the cluster:
// kube-prometheus-stack (Prometheus scrapes its pods), metrics-server and
// prometheus-adapter (which serves websocket_connections_active of every
// namespace to the HPA).
package main

import (
	"cmp"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/switchboard-dev/switchboard/blueprint"
)

// nodePort is the echo edge's on the kind node: http://localhost:8081 once
// infra/kind/cluster.yaml maps it, or through
// `kubectl -n echo port-forward svc/edge 8081:80`.
const nodePort = 30081

func main() { pulumi.Run(program) }

func program(ctx *pulumi.Context) error {
	conf := config.New(ctx, "")
	svc, err := blueprint.NewService(ctx, "echo", echo(conf.Get("image"), conf.Get("kubeContext")))
	if err != nil {
		return err
	}
	ctx.Export("echoUrl", svc.Endpoint)
	return nil
}

// echo is the service: every setting the blueprint has no default for.
func echo(image, kubeContext string) blueprint.ServiceArgs {
	return blueprint.ServiceArgs{
		Namespace: "echo",
		App: blueprint.App{
			Name: "echo", Image: cmp.Or(image, "switchboard/echo:dev"),
			Resources:   blueprint.Resources{CPURequest: "50m", MemoryRequest: "32Mi", CPULimit: "500m", MemoryLimit: "128Mi"},
			MinReplicas: 2, MaxReplicas: 5,
			// The echo's gauge is the blueprint's default metric.
			Scaling:      blueprint.Scaling{PerPod: 1000, ScaleDownWindow: 5 * time.Minute},
			Drain:        blueprint.Drain{PreStop: 5 * time.Second, Delay: 5 * time.Second, Timeout: 10 * time.Second},
			PingInterval: 25 * time.Second,
		},
		// The dev stack's kube-prometheus-stack: no rules, no dashboard.
		Observability: blueprint.Observability{PrometheusNamespace: "monitoring", DatasourceUID: "prometheus"},
		Target: blueprint.Kind{
			KubeContext: cmp.Or(kubeContext, "kind-switchboard"),
			Edge:        blueprint.Nginx{Image: "nginxinc/nginx-unprivileged:1.28.0-alpine", Replicas: 1, NodePort: nodePort},
			Endpoint:    "http://localhost:8081",
		},
	}
}
