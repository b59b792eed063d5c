// Package blueprint deploys a WebSocket service to production as one Pulumi
// component, Service: its pods, autoscaling on a per-pod gauge and CPU, a
// sticky edge, NetworkPolicies, monitoring and, when asked, Redis and
// Postgres, on a kind cluster or on AWS (a VPC, an EKS cluster, the
// managed stores and an ALB it creates, or a VPC and cluster it is given).
// The building blocks are the components of infra/*; this package wires
// them. docs/component.md shows its use; infra/ (the chat server) and
// examples/echo/deploy are its programs.
package blueprint

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/dashboards/grafana"
	"github.com/switchboard-dev/switchboard/infra/autoscaling"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
	"github.com/switchboard-dev/switchboard/infra/workload"
)

// ConnectionsMetric is the default scaling signal: a gauge of the open
// WebSockets each pod exports on /metrics, which prometheus-adapter serves
// the HPA per pod.
const ConnectionsMetric = "websocket_connections_active"

// Defaults of App.
const (
	DefaultPort       = 8080
	DefaultHealthPath = "/health"
	DefaultReadyPath  = "/ready"
	DefaultCPUPercent = 70
)

// The server's resources, drain and scaling, as infra/workload takes them.
type (
	Resources = workload.Resources
	Drain     = workload.Drain
	Scaling   = workload.Scaling
)

// App is the WebSocket server. Besides Env and SecretEnv, every pod gets
// LISTEN_ADDR, DRAIN_DELAY, DRAIN_TIMEOUT, PING_INTERVAL, ALLOWED_ORIGINS,
// LOG_LEVEL, TRUSTED_PROXIES, INSTANCE_ID and GOMEMLIMIT (docs/component.md).
type App struct {
	// Name names the Kubernetes objects and is the pods'
	// app.kubernetes.io/name.
	Name  string
	Image string
	// Port serves clients, the probes and /metrics (default DefaultPort).
	Port int
	// HealthPath answers the liveness probe, ReadyPath the readiness one
	// (defaults /health and /ready).
	HealthPath, ReadyPath string
	// Env are plain variables; SecretEnv reach the pods through a Secret.
	Env       map[string]string
	SecretEnv map[string]pulumi.StringInput
	Resources Resources
	// MinReplicas and MaxReplicas bound the HPA.
	MinReplicas, MaxReplicas int
	// Scaling is the HPA's signal: Metric (default ConnectionsMetric) per
	// pod at PerPod, and CPU at CPUPercent (default DefaultCPUPercent).
	Scaling        Scaling
	Drain          Drain
	PingInterval   time.Duration
	AllowedOrigins string
	// ImagePullSecrets name Secrets of the namespace for a private registry.
	ImagePullSecrets []string
}

// Redis and Postgres ask for a store; the server gets its URL in the
// variable URLEnv (a secret).
type (
	Redis struct {
		URLEnv string
		// Cluster, when set, makes it a Redis Cluster of that shape: on
		// kind a StatefulSet of Shards × (1 + ReplicasPerShard) pods and
		// the Job that creates the cluster, on AWS ElastiCache in cluster
		// mode. Its URL is then redis+cluster://host:port[,host:port...]
		// (rediss+cluster:// with TLS, on AWS), seed nodes to discover the
		// shards from. Nil: one primary (with replicas on AWS).
		Cluster *RedisCluster
	}
	Postgres struct{ URLEnv string }
)

// RedisCluster is a Redis Cluster's shape: Shards primaries, each with
// ReplicasPerShard replicas. Kind takes 3 to 6 shards and 0 to 2 replicas
// (infra/data), AWS up to 500 nodes in all and 1 to 5 replicas
// (infra/managed).
type RedisCluster = rediscluster.Shape

// Observability is the monitoring: kube-prometheus-stack installed, or the
// cluster's Prometheus Operator, Alertmanager and Grafana.
type Observability struct {
	Install      bool
	ChartVersion string // kube-prometheus-stack, with Install
	// PrometheusNamespace is where the cluster's Prometheus runs (not
	// Install), which the NetworkPolicies admit.
	PrometheusNamespace string
	// DatasourceUID is the Prometheus datasource the dashboard queries.
	DatasourceUID string
	Alerting      observability.Alerting
	// JobLabel is the Service label whose value becomes the pods' job in
	// Prometheus (default app.kubernetes.io/name: the job is App.Name).
	JobLabel string
	// Name names the alert rules and the dashboard; Rules and Dashboard
	// (its datasource written ${DS_PROMETHEUS}) are optional.
	Name      string
	Rules     []grafana.RuleGroup
	Dashboard []byte
}

// Metrics is what serves the HPA its metrics: metrics-server (CPU) and
// prometheus-adapter (the scaling metric, from PrometheusURL). Leave them
// false where the cluster serves those APIs already.
type Metrics struct {
	MetricsServer, PrometheusAdapter bool
	AdapterImage                     string // empty: infra/autoscaling's default
	PrometheusURL                    string
}

// ServiceArgs are the service and where it runs.
type ServiceArgs struct {
	// Namespace is created for the service.
	Namespace string
	App       App
	// Redis and Postgres are optional stores, either, both or neither, on
	// either target.
	Redis         *Redis
	Postgres      *Postgres
	Observability Observability
	Metrics       Metrics
	// Target is Kind or AWS.
	Target Target
}

// Target is where the service runs: Kind or AWS (no other type can be one).
type Target interface {
	deploy(ctx *pulumi.Context, s *Service, args ServiceArgs) error
	// policies are the NetworkPolicies' peers on the target.
	policies(args ServiceArgs, namespace pulumi.StringInput) (netpolicy.Args, error)
}

// Flows are the network flows the service's NetworkPolicies allow
// (docs/abuse.md lists the chat server's).
func Flows(args ServiceArgs) ([]netpolicy.Flow, error) {
	args, err := withDefaults(args)
	if err != nil {
		return nil, err
	}
	p, err := args.Target.policies(args, nil)
	if err != nil {
		return nil, err
	}
	return netpolicy.Flows(p), nil
}

// Service is the component. The tags name its outputs, as it registers
// them and as the provider (package provider) serves them.
type Service struct {
	pulumi.ResourceState
	// Endpoint is where clients connect (http:// or https://).
	Endpoint pulumi.StringOutput `pulumi:"endpoint"`
	// DashboardsURL is where Grafana answers, or how to reach it.
	DashboardsURL pulumi.StringOutput `pulumi:"dashboardsUrl"`
	// Kubeconfig is the created cluster's; empty on a cluster given.
	Kubeconfig pulumi.StringOutput `pulumi:"kubeconfig"`
	// ClusterName and LoadBalancer (the ALB's DNS name) are AWS's.
	ClusterName  pulumi.StringOutput `pulumi:"clusterName"`
	LoadBalancer pulumi.StringOutput `pulumi:"loadBalancer"`
}

// NewService declares the service on args.Target.
func NewService(ctx *pulumi.Context, name string, args ServiceArgs, opts ...pulumi.ResourceOption) (*Service, error) {
	args, err := withDefaults(args)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	// What a target does not set is empty, not an output that never resolves.
	none := pulumi.String("").ToStringOutput()
	s := &Service{Endpoint: none, DashboardsURL: none, Kubeconfig: none, ClusterName: none, LoadBalancer: none}
	if err := ctx.RegisterComponentResource("switchboard:index:Service", name, s, opts...); err != nil {
		return nil, err
	}
	if err := args.Target.deploy(ctx, s, args); err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	return s, ctx.RegisterResourceOutputs(s, pulumi.Map{
		"endpoint": s.Endpoint, "dashboardsUrl": s.DashboardsURL, "kubeconfig": s.Kubeconfig,
		"clusterName": s.ClusterName, "loadBalancer": s.LoadBalancer,
	})
}

// under puts a resource in the service. Stacks deployed before this
// component existed (infra/'s) have the same resources at the stack's root:
// the alias lets an update move each there rather than replace it (and its
// children, which the engine aliases alike), which for RDS would be a new,
// empty database.
func under(s *Service) pulumi.ResourceOption {
	return pulumi.Composite(pulumi.Parent(s), pulumi.Aliases([]pulumi.Alias{{NoParent: pulumi.Bool(true)}}))
}

func withDefaults(a ServiceArgs) (ServiceArgs, error) {
	if a.Target == nil {
		return a, errors.New("no target: want Kind or AWS")
	}
	if a.Namespace == "" || a.App.Name == "" || a.App.Image == "" {
		return a, errors.New("want a namespace and the app's name and image")
	}
	if a.Redis != nil && a.Redis.URLEnv == "" || a.Postgres != nil && a.Postgres.URLEnv == "" {
		return a, errors.New("a store without URLEnv: name the variable its URL goes in")
	}
	app := &a.App
	app.Port = cmp.Or(app.Port, DefaultPort)
	app.HealthPath = cmp.Or(app.HealthPath, DefaultHealthPath)
	app.ReadyPath = cmp.Or(app.ReadyPath, DefaultReadyPath)
	app.Scaling.Metric = cmp.Or(app.Scaling.Metric, ConnectionsMetric)
	app.Scaling.CPUPercent = cmp.Or(app.Scaling.CPUPercent, DefaultCPUPercent)
	a.Observability.Name = cmp.Or(a.Observability.Name, app.Name)
	a.Observability.JobLabel = cmp.Or(a.Observability.JobLabel, "app.kubernetes.io/name")
	return a, nil
}

// workloadArgs are the server's settings; the target adds where it runs
// (proxies, service account, what the pods wait for, the stores' URLs).
func workloadArgs(a ServiceArgs, namespace pulumi.StringInput, trustedProxies []string) workload.Args {
	app := a.App
	return workload.Args{
		Namespace: namespace, Name: app.Name, Image: app.Image, Port: app.Port,
		HealthPath: app.HealthPath, ReadyPath: app.ReadyPath,
		MinReplicas: app.MinReplicas, MaxReplicas: app.MaxReplicas,
		Resources: app.Resources, Drain: app.Drain, Scaling: app.Scaling,
		PingInterval: app.PingInterval, AllowedOrigins: app.AllowedOrigins,
		Env: app.Env, SecretEnv: secretEnv(app.SecretEnv), TrustedProxies: trustedProxies,
		ImagePullSecrets: app.ImagePullSecrets,
	}
}

// secretEnv copies env, for the target to add the stores' URLs to.
func secretEnv(env map[string]pulumi.StringInput) map[string]pulumi.StringInput {
	out := map[string]pulumi.StringInput{}
	maps.Copy(out, env)
	return out
}

// autoscalingArgs serve the HPA its metrics; kubeletInsecureTLS for kind's
// self-signed kubelets; nodes is the node autoscaler (AWS), nil on kind.
func autoscalingArgs(m Metrics, scaling Scaling, kubeletInsecureTLS bool, nodes *autoscaling.NodeArgs) autoscaling.Args {
	return autoscaling.Args{
		MetricsServer: m.MetricsServer, PrometheusAdapter: m.PrometheusAdapter, Metric: scaling.Metric,
		AdapterImage: m.AdapterImage, PrometheusURL: m.PrometheusURL,
		KubeletInsecureTLS: kubeletInsecureTLS, Nodes: nodes,
	}
}

// withStores puts the stores' URLs in the variables args names.
func withStores(w *workload.Args, a ServiceArgs, redisURL, databaseURL pulumi.StringInput) {
	if a.Redis != nil {
		w.SecretEnv[a.Redis.URLEnv] = redisURL
	}
	if a.Postgres != nil {
		w.SecretEnv[a.Postgres.URLEnv] = databaseURL
	}
}

// prometheusPeer is the namespace of the Prometheus that scrapes the pods:
// kube-prometheus-stack's when installed, else the cluster's.
func prometheusPeer(o Observability) netpolicy.Peer {
	if o.Install {
		return netpolicy.Peer{Namespace: observability.Namespace}
	}
	return netpolicy.Peer{Namespace: o.PrometheusNamespace}
}

func observabilityArgs(a ServiceArgs, namespace pulumi.StringInput, grafanaService string) observability.Args {
	o := a.Observability
	return observability.Args{
		Namespace: namespace, Install: o.Install, ChartVersion: o.ChartVersion,
		App: a.App.Name, JobLabel: o.JobLabel, Name: o.Name, Rules: o.Rules, Dashboard: o.Dashboard,
		GrafanaService: grafanaService, DatasourceUID: o.DatasourceUID, Alerting: o.Alerting,
	}
}
