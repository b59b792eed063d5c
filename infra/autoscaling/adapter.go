package autoscaling

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"

	apiregistrationv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apiregistration/v1"
	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	rbacv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/rbac/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// prometheus-adapter is declared here rather than installed from its Helm
// chart: the same resources then run wherever the stack runs, with the
// image a setting (an offline cluster runs one built from the adapter's
// module: make e2e), and the HPA's metric is proven on kind exactly as EKS
// gets it.
const (
	// AdapterImage is prometheus-adapter v0.12.0, the release its chart
	// 5.3.0 (the stack's earlier pin) ran.
	AdapterImage = "registry.k8s.io/prometheus-adapter/prometheus-adapter:v0.12.0"
	adapterName  = "prometheus-adapter"
	adapterPort  = 6443
	// adapterRelist is how often the adapter lists Prometheus's series: a
	// new chat pod's connections reach the HPA at most this long after its
	// first scrape (the chart's default is 1m).
	adapterRelist = "30s"
	// The custom metrics API versions the adapter serves; the HPA
	// controller takes the newest the cluster registers.
	customMetricsGroup = "custom.metrics.k8s.io"
)

var customMetricsVersions = []string{"v1beta1", "v1beta2"}

// AdapterRule is one rule of the adapter's configuration
// (https://github.com/kubernetes-sigs/prometheus-adapter/blob/v0.12.0/docs/config.md).
type AdapterRule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Resource string `json:"resource"`
		} `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// AdapterConfig is the adapter's configuration file: one rule, the
// server's gauge per pod, and no other series (the adapter's own defaults
// would publish every series Prometheus holds).
type AdapterConfig struct {
	Rules []AdapterRule `json:"rules"`
}

// adapterConfig serves metric per pod, from the series' pod and namespace
// labels (those the ServiceMonitor's scrape adds).
func adapterConfig(metric string) AdapterConfig {
	var r AdapterRule
	r.SeriesQuery = fmt.Sprintf(`%s{namespace!="",pod!=""}`, metric)
	r.Resources.Overrides = map[string]struct {
		Resource string `json:"resource"`
	}{"namespace": {Resource: "namespace"}, "pod": {Resource: "pod"}}
	r.Name.Matches = "^" + metric + "$"
	r.Name.As = metric
	r.MetricsQuery = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
	return AdapterConfig{Rules: []AdapterRule{r}}
}

// AdapterArgs configure prometheus-adapter.
type AdapterArgs struct {
	Image         string
	Metric        string // the per-pod gauge it serves
	PrometheusURL string // the Prometheus it queries
}

// prometheusAdapter declares the adapter as an aggregated API server in
// kube-system: its RBAC, configuration, Deployment, Service and the
// APIServices that route custom.metrics.k8s.io to it.
func prometheusAdapter(ctx *pulumi.Context, name string, args AdapterArgs, parent pulumi.ResourceOption) error {
	prom, err := url.Parse(args.PrometheusURL)
	if err != nil || prom.Hostname() == "" {
		return fmt.Errorf("autoscaling %s: Prometheus URL %q: want http://host:port", name, args.PrometheusURL)
	}
	config, err := json.Marshal(adapterConfig(args.Metric)) // JSON is YAML to the adapter's parser
	if err != nil {
		return fmt.Errorf("autoscaling %s: adapter config: %w", name, err)
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("autoscaling %s: prometheus-adapter %s: %w", name, what, err)
	}
	labels := pulumi.StringMap{"app.kubernetes.io/name": pulumi.String(adapterName)}
	meta := func(n string) *metav1.ObjectMetaArgs {
		return &metav1.ObjectMetaArgs{Name: pulumi.String(n), Namespace: pulumi.String(namespace), Labels: labels}
	}
	account := rbacv1.SubjectArray{rbacv1.SubjectArgs{Kind: pulumi.String("ServiceAccount"), Name: pulumi.String(adapterName), Namespace: pulumi.String(namespace)}}
	sa, err := corev1.NewServiceAccount(ctx, name+"-adapter", &corev1.ServiceAccountArgs{Metadata: meta(adapterName)}, parent)
	if err != nil {
		return fail("service account", err)
	}
	// What the adapter maps series labels to, to answer the HPA's selector.
	reader, err := rbacv1.NewClusterRole(ctx, name+"-adapter-reader", &rbacv1.ClusterRoleArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(adapterName + "-resource-reader"), Labels: labels},
		Rules: rbacv1.PolicyRuleArray{rbacv1.PolicyRuleArgs{
			ApiGroups: pulumi.StringArray{pulumi.String("")},
			Resources: pulumi.ToStringArray([]string{"namespaces", "pods", "services"}),
			Verbs:     pulumi.ToStringArray([]string{"get", "list", "watch"}),
		}},
	}, parent)
	if err != nil {
		return fail("resource reader role", err)
	}
	// The HPA controller reads the custom metrics API under its own
	// service account (kube-controller-manager's
	// --use-service-account-credentials, kubeadm's and EKS's default).
	metricsReader, err := rbacv1.NewClusterRole(ctx, name+"-custom-metrics-reader", &rbacv1.ClusterRoleArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("custom-metrics-reader"), Labels: labels},
		Rules: rbacv1.PolicyRuleArray{rbacv1.PolicyRuleArgs{
			ApiGroups: pulumi.StringArray{pulumi.String(customMetricsGroup)},
			Resources: pulumi.StringArray{pulumi.String("*")},
			Verbs:     pulumi.ToStringArray([]string{"get", "list", "watch"}),
		}},
	}, parent)
	if err != nil {
		return fail("custom metrics reader role", err)
	}
	for _, b := range []struct {
		id, name string
		role     pulumi.StringInput
		subjects rbacv1.SubjectArray
	}{
		{"reader", adapterName + "-resource-reader", reader.Metadata.Name().Elem(), account},
		// Delegated authentication and authorization of the API server's
		// callers (TokenReviews, SubjectAccessReviews).
		{"delegator", adapterName + ":system:auth-delegator", pulumi.String("system:auth-delegator"), account},
		{"hpa", "hpa-controller-custom-metrics", metricsReader.Metadata.Name().Elem(), rbacv1.SubjectArray{rbacv1.SubjectArgs{
			Kind: pulumi.String("ServiceAccount"), Name: pulumi.String("horizontal-pod-autoscaler"), Namespace: pulumi.String("kube-system"),
		}}},
	} {
		if _, err := rbacv1.NewClusterRoleBinding(ctx, name+"-adapter-"+b.id, &rbacv1.ClusterRoleBindingArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(b.name), Labels: labels},
			RoleRef:  rbacv1.RoleRefArgs{ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Kind: pulumi.String("ClusterRole"), Name: b.role},
			Subjects: b.subjects,
		}, parent); err != nil {
			return fail(b.id+" binding", err)
		}
	}
	// The client CA that authenticates the API server's requests.
	if _, err := rbacv1.NewRoleBinding(ctx, name+"-adapter-auth-reader", &rbacv1.RoleBindingArgs{
		Metadata: meta(adapterName + "-auth-reader"),
		RoleRef:  rbacv1.RoleRefArgs{ApiGroup: pulumi.String("rbac.authorization.k8s.io"), Kind: pulumi.String("Role"), Name: pulumi.String("extension-apiserver-authentication-reader")},
		Subjects: account,
	}, parent); err != nil {
		return fail("auth reader binding", err)
	}
	cm, err := corev1.NewConfigMap(ctx, name+"-adapter", &corev1.ConfigMapArgs{
		Metadata: meta(adapterName),
		Data:     pulumi.StringMap{"config.yaml": pulumi.String(config)},
	}, parent)
	if err != nil {
		return fail("config", err)
	}
	probe := func(path string) *corev1.ProbeArgs {
		return &corev1.ProbeArgs{
			HttpGet:       &corev1.HTTPGetActionArgs{Path: pulumi.String(path), Port: pulumi.String("https"), Scheme: pulumi.String("HTTPS")},
			PeriodSeconds: pulumi.Int(10), FailureThreshold: pulumi.Int(3),
		}
	}
	deploy, err := appsv1.NewDeployment(ctx, name+"-adapter", &appsv1.DeploymentArgs{
		Metadata: meta(adapterName),
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(1),
			Selector: &metav1.LabelSelectorArgs{MatchLabels: labels},
			Template: &corev1.PodTemplateSpecArgs{
				// A new configuration rolls the pod: the adapter reads it once.
				Metadata: &metav1.ObjectMetaArgs{Labels: labels, Annotations: pulumi.StringMap{
					"switchboard.dev/config": pulumi.String(fmt.Sprintf("%x", sha256.Sum256(config))[:16]),
				}},
				Spec: &corev1.PodSpecArgs{
					ServiceAccountName: sa.Metadata.Name().Elem(),
					SecurityContext: &corev1.PodSecurityContextArgs{
						RunAsNonRoot: pulumi.Bool(true), RunAsUser: pulumi.Int(10001),
						SeccompProfile: &corev1.SeccompProfileArgs{Type: pulumi.String("RuntimeDefault")},
					},
					Containers: corev1.ContainerArray{corev1.ContainerArgs{
						Name:  pulumi.String(adapterName),
						Image: pulumi.String(args.Image),
						Args: pulumi.ToStringArray([]string{
							fmt.Sprintf("--secure-port=%d", adapterPort),
							// A self-signed serving certificate, made at start
							// (the APIServices skip its verification).
							"--cert-dir=/tmp/cert",
							"--config=/etc/adapter/config.yaml",
							"--prometheus-url=" + prom.String(),
							"--metrics-relist-interval=" + adapterRelist,
						}),
						Ports:          corev1.ContainerPortArray{corev1.ContainerPortArgs{Name: pulumi.String("https"), ContainerPort: pulumi.Int(adapterPort)}},
						ReadinessProbe: probe("/readyz"),
						LivenessProbe:  probe("/livez"),
						Resources: &corev1.ResourceRequirementsArgs{
							Requests: pulumi.StringMap{"cpu": pulumi.String("50m"), "memory": pulumi.String("64Mi")},
							Limits:   pulumi.StringMap{"memory": pulumi.String("256Mi")},
						},
						SecurityContext: &corev1.SecurityContextArgs{
							AllowPrivilegeEscalation: pulumi.Bool(false), ReadOnlyRootFilesystem: pulumi.Bool(true),
							Capabilities: &corev1.CapabilitiesArgs{Drop: pulumi.StringArray{pulumi.String("ALL")}},
						},
						VolumeMounts: corev1.VolumeMountArray{
							corev1.VolumeMountArgs{Name: pulumi.String("tmp"), MountPath: pulumi.String("/tmp")},
							corev1.VolumeMountArgs{Name: pulumi.String("config"), MountPath: pulumi.String("/etc/adapter"), ReadOnly: pulumi.Bool(true)},
						},
					}},
					Volumes: corev1.VolumeArray{
						corev1.VolumeArgs{Name: pulumi.String("tmp"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{}},
						corev1.VolumeArgs{Name: pulumi.String("config"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: cm.Metadata.Name()}},
					},
				},
			},
		},
	}, parent)
	if err != nil {
		return fail("deployment", err)
	}
	svc, err := corev1.NewService(ctx, name+"-adapter", &corev1.ServiceArgs{
		Metadata: meta(adapterName),
		Spec: &corev1.ServiceSpecArgs{
			Selector: labels,
			Ports:    corev1.ServicePortArray{corev1.ServicePortArgs{Name: pulumi.String("https"), Port: pulumi.Int(443), TargetPort: pulumi.String("https")}},
		},
	}, parent)
	if err != nil {
		return fail("service", err)
	}
	for _, v := range customMetricsVersions {
		if _, err := apiregistrationv1.NewAPIService(ctx, name+"-adapter-"+v, &apiregistrationv1.APIServiceArgs{
			Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(v + "." + customMetricsGroup), Labels: labels},
			Spec: &apiregistrationv1.APIServiceSpecArgs{
				Group: pulumi.String(customMetricsGroup), Version: pulumi.String(v),
				Service:               &apiregistrationv1.ServiceReferenceArgs{Name: svc.Metadata.Name(), Namespace: pulumi.String(namespace)},
				InsecureSkipTLSVerify: pulumi.Bool(true),
				GroupPriorityMinimum:  pulumi.Int(100), VersionPriority: pulumi.Int(100),
			},
		}, parent, pulumi.DependsOn([]pulumi.Resource{deploy})); err != nil {
			return fail("API service "+v, err)
		}
	}
	return nil
}
