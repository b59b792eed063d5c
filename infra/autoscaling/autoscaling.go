// Package autoscaling makes the chat server's autoscaler act. The
// HorizontalPodAutoscaler (infra/workload) scales on active WebSocket
// connections per pod and on CPU; this package serves it those metrics and,
// on EKS, lets the nodes follow the pods:
//   - metrics-server: the resource metrics API (CPU);
//   - prometheus-adapter: the custom metrics API, serving each chat pod's
//     websocket_connections_active from Prometheus;
//   - the Cluster Autoscaler (AWS): adds a node when pods cannot be
//     scheduled and removes idle ones, within nodeMin and nodeMax.
package autoscaling

import (
	"fmt"
	"net/url"

	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// ConnectionsMetric is the per-pod metric the HPA targets, as the adapter
// serves it: the chat server's gauge of open connections (a metric-name
// contract, see README "Metrics").
const ConnectionsMetric = "websocket_connections_active"

// Pinned charts.
const (
	metricsServerRepo    = "https://kubernetes-sigs.github.io/metrics-server/"
	metricsServerChart   = "3.12.2" // metrics-server v0.7.2
	adapterRepo          = "https://prometheus-community.github.io/helm-charts"
	adapterChart         = "5.3.0" // prometheus-adapter v0.12.0
	namespace            = "kube-system"
	adapterMetricsQuery  = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
	adapterSeriesPattern = `%s{namespace!="",pod!=""}`
)

// Args configure the metrics pipeline.
type Args struct {
	// MetricsServer installs metrics-server; false when the cluster runs one.
	MetricsServer bool
	// KubeletInsecureTLS: kind's kubelets serve self-signed certificates.
	KubeletInsecureTLS bool
	// PrometheusAdapter installs prometheus-adapter, which serves the HPA the
	// connections metric from Prometheus; false when none can be installed.
	PrometheusAdapter bool
	// PrometheusURL is the Prometheus the adapter queries.
	PrometheusURL string
	// Nodes is the node autoscaler (EKS); nil on kind.
	Nodes *NodeArgs
}

// Autoscaling is the component.
type Autoscaling struct {
	pulumi.ResourceState
}

// New declares the metrics pipeline and, with args.Nodes, the node autoscaler.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Autoscaling, error) {
	a := &Autoscaling{}
	if err := ctx.RegisterComponentResource("switchboard:index:Autoscaling", name, a, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(a)
	if args.MetricsServer {
		values := pulumi.Map{}
		if args.KubeletInsecureTLS {
			// metrics-server verifies each kubelet's serving certificate
			// against the cluster CA; kind's kubelets (kubeadm) serve
			// self-signed ones, so it never becomes ready without this.
			// https://github.com/kubernetes-sigs/metrics-server#requirements
			values["args"] = pulumi.ToStringArray([]string{"--kubelet-insecure-tls"})
		}
		if _, err := helmv3.NewRelease(ctx, name+"-metrics-server", &helmv3.ReleaseArgs{
			Name: pulumi.String("metrics-server"), Chart: pulumi.String("metrics-server"), Version: pulumi.String(metricsServerChart),
			Namespace: pulumi.String(namespace), RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(metricsServerRepo)},
			Values: values,
		}, parent); err != nil {
			return nil, fmt.Errorf("autoscaling %s: metrics-server: %w", name, err)
		}
	}
	if args.PrometheusAdapter {
		prom, err := url.Parse(args.PrometheusURL)
		if err != nil || prom.Hostname() == "" {
			return nil, fmt.Errorf("autoscaling %s: Prometheus URL %q: want http://host:port", name, args.PrometheusURL)
		}
		port := prom.Port()
		if port == "" {
			port = "9090"
		}
		if _, err := helmv3.NewRelease(ctx, name+"-prometheus-adapter", &helmv3.ReleaseArgs{
			Name: pulumi.String("prometheus-adapter"), Chart: pulumi.String("prometheus-adapter"), Version: pulumi.String(adapterChart),
			Namespace: pulumi.String(namespace), RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(adapterRepo)},
			Values: pulumi.Map{
				"prometheus": pulumi.Map{"url": pulumi.String(prom.Scheme + "://" + prom.Hostname()), "port": pulumi.String(port)},
				// Only the chat server's metric: the defaults would publish
				// every series Prometheus holds.
				"rules": pulumi.Map{"default": pulumi.Bool(false), "custom": pulumi.Array{pulumi.Map{
					"seriesQuery": pulumi.String(fmt.Sprintf(adapterSeriesPattern, ConnectionsMetric)),
					"resources": pulumi.Map{"overrides": pulumi.Map{
						"namespace": pulumi.Map{"resource": pulumi.String("namespace")},
						"pod":       pulumi.Map{"resource": pulumi.String("pod")},
					}},
					"name":         pulumi.Map{"matches": pulumi.String("^" + ConnectionsMetric + "$"), "as": pulumi.String(ConnectionsMetric)},
					"metricsQuery": pulumi.String(adapterMetricsQuery),
				}}},
			},
		}, parent); err != nil {
			return nil, fmt.Errorf("autoscaling %s: prometheus-adapter: %w", name, err)
		}
	}
	if args.Nodes != nil {
		if err := clusterAutoscaler(ctx, name, *args.Nodes, parent); err != nil {
			return nil, err
		}
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{})
}
