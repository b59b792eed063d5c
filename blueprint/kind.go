package blueprint

import (
	"cmp"
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
	"github.com/switchboard-dev/switchboard/infra/workload"
)

// KindPodSubnet is the pods' network of infra/kind/cluster.yaml, which
// leaves networking.podSubnet to kind's default (kind's configuration
// guide, "Pod Subnet"). NGINX connects to the server's pods from an address
// in it: the server trusts the X-Forwarded-For of those peers only.
const KindPodSubnet = "10.244.0.0/16"

// Host ports that infra/kind/cluster.yaml maps to the kind node's ports.
const (
	KindEndpoint      = "http://localhost:8080"
	KindDashboardsURL = "http://localhost:3000"
)

// Kind runs everything in a kind cluster, NGINX in front: it hashes each
// client's address to one pod (ip_hash), so a reconnect lands where it was.
type Kind struct {
	// KubeContext is the kubeconfig context of the cluster; Provider, if
	// set, is used instead (bring your own).
	KubeContext string
	Provider    *kubernetes.Provider
	// PodSubnet is where NGINX connects from (default KindPodSubnet).
	PodSubnet string
	Edge      Nginx
	// Endpoint and DashboardsURL are where the host reaches the edge's and
	// Grafana's node ports (defaults KindEndpoint, KindDashboardsURL).
	Endpoint, DashboardsURL string
	// The in-cluster stores: images (empty: infra/data's defaults) and
	// Postgres's password.
	RedisImage, PostgresImage string
	PostgresPassword          pulumi.StringInput
}

// Nginx is the kind edge.
type Nginx struct {
	Image    string // NGINX 1.27.3 or newer, unprivileged
	Replicas int
	NodePort int // mapped to the host
}

func (k Kind) deploy(ctx *pulumi.Context, s *Service, a ServiceArgs) error {
	provider := k.Provider
	if provider == nil {
		var err error
		if provider, err = kubernetes.NewProvider(ctx, "kind", &kubernetes.ProviderArgs{Context: pulumi.String(k.KubeContext)}, under(s)); err != nil {
			return fmt.Errorf("kubernetes provider: %w", err)
		}
	}
	k8s := pulumi.Provider(provider)
	ns, err := corev1.NewNamespace(ctx, a.Namespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(a.Namespace), Labels: pulumi.StringMap{"app.kubernetes.io/part-of": pulumi.String(naming.Project)}},
	}, k8s, under(s))
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	inNamespace := []pulumi.ResourceOption{k8s, under(s), pulumi.DependsOn([]pulumi.Resource{ns})}
	namespace := ns.Metadata.Name().Elem()

	wa := workloadArgs(a, namespace, []string{cmp.Or(k.PodSubnet, KindPodSubnet)})
	if a.Redis != nil || a.Postgres != nil {
		da := data.Args{
			Namespace: namespace, Redis: a.Redis != nil, Postgres: a.Postgres != nil,
			Password: k.PostgresPassword, RedisImage: k.RedisImage, PostgresImage: k.PostgresImage,
		}
		if a.Redis != nil {
			da.RedisCluster = a.Redis.Cluster
		}
		stores, err := data.New(ctx, "data", da, inNamespace...)
		if err != nil {
			return err
		}
		withStores(&wa, a, stores.RedisURL, stores.DatabaseURL)
		if stores.RedisReady != nil {
			// The server starts once the cluster serves every slot.
			wa.After = append(wa.After, stores.RedisReady)
		}
	}
	app, err := workload.New(ctx, a.App.Name, wa, inNamespace...)
	if err != nil {
		return err
	}
	policies, err := k.policies(a, namespace)
	if err != nil {
		return err
	}
	if _, err := netpolicy.New(ctx, "netpolicy", policies, inNamespace...); err != nil {
		return err
	}
	if _, err := autoscaling.New(ctx, "autoscaling", autoscalingArgs(a.Metrics, a.App.Scaling, true, nil), k8s, under(s)); err != nil {
		return err
	}
	if _, err := edge.NewNginx(ctx, "edge", edge.NginxArgs{
		Namespace: namespace,
		Upstream:  pulumi.Sprintf("%s.%s.svc.cluster.local:%d", app.Headless, namespace, a.App.Port),
		Image:     k.Edge.Image, Replicas: k.Edge.Replicas, NodePort: k.Edge.NodePort,
	}, inNamespace...); err != nil {
		return err
	}
	if _, err := observability.New(ctx, "observability", observabilityArgs(a, namespace, "NodePort"), inNamespace...); err != nil {
		return err
	}
	s.Endpoint = pulumi.String(cmp.Or(k.Endpoint, KindEndpoint)).ToStringOutput()
	s.DashboardsURL = pulumi.String(cmp.Or(k.DashboardsURL, KindDashboardsURL)).ToStringOutput()
	return nil
}

// policies are the NetworkPolicy peers on kind: NGINX and the stores are
// pods of the namespace.
func (Kind) policies(a ServiceArgs, namespace pulumi.StringInput) (netpolicy.Args, error) {
	p := netpolicy.Args{
		Namespace: namespace, App: a.App.Name, AppPort: a.App.Port,
		Edge:       &netpolicy.Edge{Component: naming.Edge, Port: edge.NginxPort},
		Prometheus: prometheusPeer(a.Observability),
	}
	if a.Redis != nil {
		p.Redis = &netpolicy.Store{At: netpolicy.Peer{Component: naming.Redis}, Port: data.RedisPort}
		if a.Redis.Cluster != nil {
			p.Redis.Cluster = &netpolicy.StoreCluster{Bus: data.ClusterBusPort, Setup: data.ClusterSetup}
		}
	}
	if a.Postgres != nil {
		p.Postgres = &netpolicy.Store{At: netpolicy.Peer{Component: naming.Postgres}, Port: data.PostgresPort}
	}
	return p, nil
}
