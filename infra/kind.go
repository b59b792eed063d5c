package main

import (
	"fmt"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/autoscaling"
	"github.com/switchboard-dev/switchboard/infra/data"
	"github.com/switchboard-dev/switchboard/infra/edge"
	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
	"github.com/switchboard-dev/switchboard/infra/workload"
)

// Host ports that infra/kind/cluster.yaml maps to the kind node's ports.
const (
	kindChatURL    = "http://localhost:8080"
	kindGrafanaURL = "http://localhost:3000"
)

// kindPodSubnet is the pods' network of infra/kind/cluster.yaml, which
// leaves networking.podSubnet to kind's default (kind's configuration
// guide, "Pod Subnet"). NGINX connects to the chat pods from an address in
// it: the chat server trusts the X-Forwarded-For of those peers only.
const kindPodSubnet = "10.244.0.0/16"

// kindStack is the dev stack: everything in the kind cluster, NGINX in front.
func kindStack(ctx *pulumi.Context, cfg stackconfig.Config) error {
	provider, err := kubernetes.NewProvider(ctx, "kind", &kubernetes.ProviderArgs{Context: pulumi.String(cfg.KubeContext)})
	if err != nil {
		return fmt.Errorf("kubernetes provider: %w", err)
	}
	k8s := pulumi.Provider(provider)
	ns, err := corev1.NewNamespace(ctx, cfg.Namespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(cfg.Namespace), Labels: pulumi.StringMap{"app.kubernetes.io/part-of": pulumi.String(naming.Project)}},
	}, k8s)
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	inNamespace := []pulumi.ResourceOption{k8s, pulumi.DependsOn([]pulumi.Resource{ns})}
	namespace := ns.Metadata.Name().Elem()

	stores, err := data.New(ctx, "data", data.Args{Namespace: namespace, Password: cfg.DatabasePassword, RedisImage: cfg.RedisImage, PostgresImage: cfg.PostgresImage}, inNamespace...)
	if err != nil {
		return err
	}
	wa := workloadArgs(cfg, namespace, stores.RedisURL, stores.DatabaseURL)
	wa.TrustedProxies = []string{kindPodSubnet}
	chat, err := workload.New(ctx, "chat", wa, inNamespace...)
	if err != nil {
		return err
	}
	if _, err := netpolicy.New(ctx, "netpolicy", kindPolicies(cfg, namespace), inNamespace...); err != nil {
		return err
	}
	if _, err := autoscaling.New(ctx, "autoscaling", autoscalingArgs(cfg, nil), k8s); err != nil {
		return err
	}
	if _, err := edge.NewNginx(ctx, "edge", edge.NginxArgs{
		Namespace: namespace,
		Upstream:  pulumi.Sprintf("%s.%s.svc.cluster.local:%d", chat.Headless, namespace, workload.Port),
		Image:     cfg.EdgeImage, Replicas: cfg.EdgeReplicas, NodePort: cfg.EdgeNodePort,
	}, inNamespace...); err != nil {
		return err
	}
	if _, err := observability.New(ctx, "observability", observabilityArgs(cfg, namespace, "NodePort"), inNamespace...); err != nil {
		return err
	}
	ctx.Export("chatUrl", pulumi.String(kindChatURL))
	ctx.Export("grafanaUrl", pulumi.String(kindGrafanaURL))
	return nil
}

// workloadArgs are the chat server's settings from the stack config; every
// target runs the same workload.
func workloadArgs(cfg stackconfig.Config, namespace pulumi.StringInput, redisURL, databaseURL pulumi.StringInput) workload.Args {
	return workload.Args{
		Namespace:         namespace,
		Image:             cfg.Image,
		MinReplicas:       cfg.Replicas,
		MaxReplicas:       cfg.MaxReplicas,
		ConnectionsPerPod: cfg.ConnectionsPerPod,
		ScaleDownWindow:   cfg.ScaleDownWindow,
		Resources: workload.Resources{
			CPURequest: cfg.CPURequest, MemoryRequest: cfg.MemoryRequest, CPULimit: cfg.CPULimit, MemoryLimit: cfg.MemoryLimit,
		},
		Drain:          workload.Drain{PreStop: cfg.PreStop, Delay: cfg.DrainDelay, Timeout: cfg.DrainTimeout},
		PingInterval:   cfg.PingInterval,
		AllowedOrigins: cfg.AllowedOrigins,
		RedisURL:       redisURL,
		DatabaseURL:    databaseURL,
		JWTSecret:      cfg.JWTSecret,
		Env:            devSecretEnv(cfg),

		ImagePullSecrets: cfg.ImagePullSecrets,
	}
}

// devSecretEnv lets the chat server accept the development secret when a
// kind stack uses it (stackconfig refuses it on every other target).
func devSecretEnv(cfg stackconfig.Config) map[string]string {
	if !cfg.DevSecret || cfg.Target != stackconfig.Kind {
		return nil
	}
	return map[string]string{"ALLOW_DEV_SECRET": "true"}
}

// autoscalingArgs serve the HPA its metrics; nodes is the node autoscaler
// (AWS), nil on kind.
func autoscalingArgs(cfg stackconfig.Config, nodes *autoscaling.NodeArgs) autoscaling.Args {
	return autoscaling.Args{
		MetricsServer:      cfg.MetricsServer,
		PrometheusAdapter:  cfg.PrometheusAdapter,
		AdapterImage:       cfg.AdapterImage,
		KubeletInsecureTLS: cfg.Target == stackconfig.Kind,
		PrometheusURL:      cfg.PrometheusURL,
		Nodes:              nodes,
	}
}

// kindPolicies are the dev stack's NetworkPolicy peers: NGINX and the
// stores are pods of the namespace.
func kindPolicies(cfg stackconfig.Config, namespace pulumi.StringInput) netpolicy.Args {
	return netpolicy.Args{
		Namespace: namespace, ChatPort: workload.Port,
		Edge:       &netpolicy.Edge{Component: naming.Edge, Port: edge.NginxPort},
		Prometheus: prometheusPeer(cfg),
		Redis:      netpolicy.Store{At: netpolicy.Peer{Component: naming.Redis}, Port: data.RedisPort},
		Postgres:   netpolicy.Store{At: netpolicy.Peer{Component: naming.Postgres}, Port: data.PostgresPort},
	}
}

// prometheusPeer is the namespace of the Prometheus that scrapes the chat
// pods: kube-prometheus-stack's in install mode, the cluster's in existing
// mode.
func prometheusPeer(cfg stackconfig.Config) netpolicy.Peer {
	if cfg.Observability == stackconfig.Install {
		return netpolicy.Peer{Namespace: observability.Namespace}
	}
	return netpolicy.Peer{Namespace: cfg.PrometheusNamespace}
}

func observabilityArgs(cfg stackconfig.Config, namespace pulumi.StringInput, grafanaService string) observability.Args {
	return observability.Args{
		Namespace:      namespace,
		Install:        cfg.Observability == stackconfig.Install,
		ChartVersion:   cfg.PrometheusStackVer,
		MinInstances:   cfg.Replicas,
		GrafanaService: grafanaService,
		DatasourceUID:  cfg.GrafanaDatasourceUID,
		Alerting:       alerting(cfg),
	}
}

// alerting is the stack's alert routing, for the installed Alertmanager.
func alerting(cfg stackconfig.Config) observability.Alerting {
	a := observability.Alerting{
		GroupWait: cfg.AlertTiming.GroupWait, GroupInterval: cfg.AlertTiming.GroupInterval, RepeatInterval: cfg.AlertTiming.RepeatInterval,
	}
	for _, r := range cfg.AlertReceivers {
		a.Receivers = append(a.Receivers, observability.Receiver{
			Name: r.Name, Type: r.Type, CriticalOnly: r.Severity == stackconfig.CriticalOnly,
			URL: r.URL, Channel: r.Channel, To: r.To, From: r.From, Smarthost: r.Smarthost, Username: r.Username,
			RequireTLS: r.RequireTLS == nil || *r.RequireTLS, Secret: r.Secret, HasSecret: r.SecretKey != "",
		})
	}
	return a
}
