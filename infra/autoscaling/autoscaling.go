// Package autoscaling makes a server's autoscaler act. The
// HorizontalPodAutoscaler (infra/workload) scales on a per-pod gauge of
// connections and on CPU; this package serves it those metrics and, on
// EKS, lets the nodes follow the pods:
//   - metrics-server: the resource metrics API (CPU);
//   - prometheus-adapter: the custom metrics API, serving each pod's
//     gauge from Prometheus;
//   - the Cluster Autoscaler (AWS): adds a node when pods cannot be
//     scheduled and removes idle ones, within nodeMin and nodeMax.
package autoscaling

import (
	"cmp"
	"fmt"

	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Pinned charts.
const (
	metricsServerRepo  = "https://kubernetes-sigs.github.io/metrics-server/"
	metricsServerChart = "3.12.2" // metrics-server v0.7.2
	namespace          = "kube-system"
)

// Args configure the metrics pipeline.
type Args struct {
	// MetricsServer installs metrics-server; false when the cluster runs one.
	MetricsServer bool
	// KubeletInsecureTLS: kind's kubelets serve self-signed certificates.
	KubeletInsecureTLS bool
	// PrometheusAdapter runs prometheus-adapter (adapter.go), which serves
	// the HPA Metric, a per-pod gauge, from Prometheus, from AdapterImage;
	// false when the cluster serves custom.metrics.k8s.io already.
	PrometheusAdapter bool
	Metric            string
	AdapterImage      string // empty: AdapterImage
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
		if err := prometheusAdapter(ctx, name, AdapterArgs{Image: cmp.Or(args.AdapterImage, AdapterImage), Metric: args.Metric, PrometheusURL: args.PrometheusURL}, parent); err != nil {
			return nil, err
		}
	}
	if args.Nodes != nil {
		if err := clusterAutoscaler(ctx, name, *args.Nodes, parent); err != nil {
			return nil, err
		}
	}
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{})
}
