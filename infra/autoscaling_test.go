package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/autoscaling"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

// release returns the values of the Helm release declared as name, or nil.
func (s *stack) release(name string) map[string]any {
	for _, r := range s.all("helm.sh/v3:Release") {
		if r["name"] == name {
			return r
		}
	}
	return nil
}

// The HPA scales on open connections per pod, averaged over the pods (a
// "Pods" metric with an AverageValue target), and on CPU; the HPA takes
// the larger replica count of the two. No memory metric: the Go heap grows
// towards GOMEMLIMIT by design and would pin the replicas at the maximum.
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
func TestHPAScalesOnConnectionsPerPodAndCPUNotMemory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		conns  string
	}{
		{"kind default", kindConfig(), "5000"},
		{"kind configured", kindConfig("connectionsPerPod", "1200"), "1200"},
		{"aws configured", awsConfig("connectionsPerPod", "8000"), "8000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hpa := mustRun(t, tc.config).one(t, "autoscaling/v2:HorizontalPodAutoscaler", "chat")
			got := map[string]string{}
			for _, m := range get(hpa, "spec.metrics").([]any) {
				switch get(m, "type") {
				case "Pods":
					got[get(m, "pods.metric.name").(string)] = fmt.Sprintf("%v %v", get(m, "pods.target.type"), get(m, "pods.target.averageValue"))
				case "Resource":
					got[get(m, "resource.name").(string)] = fmt.Sprintf("%v %v", get(m, "resource.target.type"), get(m, "resource.target.averageUtilization"))
				default:
					t.Errorf("metric %v: want Pods and Resource metrics only", m)
				}
			}
			want := map[string]string{blueprint.ConnectionsMetric: "AverageValue " + tc.conns, "cpu": "Utilization 70"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("HPA metrics %v, want %v and nothing else (no memory)", got, want)
			}
		})
	}
}

// prometheus-adapter serves, per pod, exactly the series the HPA names,
// attached to the pod and namespace labels that the ServiceMonitor's
// scrape adds, and nothing else, from the stack's Prometheus; the
// APIServices route custom.metrics.k8s.io to it and the HPA controller may
// read it.
// https://github.com/kubernetes-sigs/prometheus-adapter/blob/v0.12.0/docs/config.md
func TestPrometheusAdapterServesTheConnectionsMetricPerPod(t *testing.T) {
	for _, tc := range []struct {
		name, wantURL, wantImage string
		config                   map[string]string
	}{
		{"install", "http://kube-prometheus-stack-prometheus.monitoring.svc:9090", autoscaling.AdapterImage, kindConfig()},
		{"existing", "http://prometheus-operated.observability.svc:9091", autoscaling.AdapterImage, kindConfig("prometheusUrl", "http://prometheus-operated.observability.svc:9091")},
		{"aws", "http://kube-prometheus-stack-prometheus.monitoring.svc:9090", autoscaling.AdapterImage, awsConfig()},
		{"own image", "http://kube-prometheus-stack-prometheus.monitoring.svc:9090", "registry.example.com/prometheus-adapter:v0.12.0", kindConfig("prometheusAdapterImage", "registry.example.com/prometheus-adapter:v0.12.0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustRun(t, tc.config)
			c := get(s.one(t, "apps/v1:Deployment", "prometheus-adapter"), "spec.template.spec.containers.0")
			if get(c, "image") != tc.wantImage {
				t.Errorf("adapter image %v, want %s", get(c, "image"), tc.wantImage)
			}
			args := fmt.Sprint(get(c, "args"))
			if !strings.Contains(args, "--prometheus-url="+tc.wantURL+" ") || !strings.Contains(args, "--config=/etc/adapter/config.yaml") {
				t.Errorf("adapter args %s: want --prometheus-url=%s and the mounted config", args, tc.wantURL)
			}
			var cfg autoscaling.AdapterConfig
			data, _ := get(s.one(t, "core/v1:ConfigMap", "prometheus-adapter"), "data").(map[string]any)
			if err := json.Unmarshal([]byte(fmt.Sprint(data["config.yaml"])), &cfg); err != nil {
				t.Fatal(err)
			}
			if len(cfg.Rules) != 1 {
				t.Fatalf("%d rules, want 1: more would publish other series", len(cfg.Rules))
			}
			r := cfg.Rules[0]
			hpaMetric := get(s.one(t, "autoscaling/v2:HorizontalPodAutoscaler", "chat"), "spec.metrics.0.pods.metric.name")
			if r.Name.As != hpaMetric || !strings.HasPrefix(r.SeriesQuery, blueprint.ConnectionsMetric+"{") {
				t.Errorf("rule serves %v from %v; the HPA asks for %v", r.Name.As, r.SeriesQuery, hpaMetric)
			}
			if r.Resources.Overrides["pod"].Resource != "pod" || r.Resources.Overrides["namespace"].Resource != "namespace" {
				t.Errorf("rule resources %v: want the series' pod and namespace labels mapped to pods", r.Resources)
			}
			for _, v := range []string{"v1beta1", "v1beta2"} {
				api := s.one(t, "apiregistration.k8s.io/v1:APIService", v+".custom.metrics.k8s.io")
				if get(api, "spec.service.name") != "prometheus-adapter" || get(api, "spec.service.namespace") != "kube-system" {
					t.Errorf("APIService %s routes to %v", v, get(api, "spec.service"))
				}
			}
			hpa := s.one(t, "rbac.authorization.k8s.io/v1:ClusterRoleBinding", "hpa-controller-custom-metrics")
			if get(hpa, "subjects.0.name") != "horizontal-pod-autoscaler" || get(hpa, "subjects.0.namespace") != "kube-system" {
				t.Errorf("custom metrics readable by %v, want the HPA controller's service account", get(hpa, "subjects"))
			}
		})
	}
}

// The HPA scales in only after its recommendation has stayed lower for
// scaleDownWindow (5m, shortened by a test on kind), which the API bounds
// to whole seconds up to an hour (autoscaling/v2 HPAScalingRules,
// stabilizationWindowSeconds: "less than or equal to 3600 (one hour)").
func TestScaleDownWindowIsStackConfig(t *testing.T) {
	for _, tc := range []struct {
		window string
		want   float64
		refuse bool
	}{
		{"", 300, false},
		{"30s", 30, false},
		{"1h", 3600, false},
		{"0s", 0, false},
		{"61m", 0, true},
		{"1500ms", 0, true},
		{"soon", 0, true},
	} {
		t.Run("scaleDownWindow="+tc.window, func(t *testing.T) {
			cfg := kindConfig()
			if tc.window != "" {
				cfg = kindConfig("scaleDownWindow", tc.window)
			}
			s, err := run(cfg)
			if tc.refuse {
				if err == nil || !strings.Contains(err.Error(), "switchboard:scaleDownWindow") {
					t.Errorf("err %v: want a refusal naming switchboard:scaleDownWindow", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hpa := s.one(t, "autoscaling/v2:HorizontalPodAutoscaler", "chat")
			if got := get(hpa, "spec.behavior.scaleDown.stabilizationWindowSeconds"); got != tc.want {
				t.Errorf("stabilizationWindowSeconds %v, want %v", got, tc.want)
			}
		})
	}
}

// metrics-server serves the resource metrics API the CPU target needs, on
// both targets. It checks each kubelet's serving certificate against the
// cluster CA, which kind's kubeadm-made kubelets do not have, so on kind
// it runs with --kubelet-insecure-tls (metrics-server README,
// "Requirements"); on EKS the kubelet certificates verify and it does not.
func TestMetricsServerIsInstalledOnBothTargets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   map[string]string
		installs bool
		insecure bool
	}{
		{"kind", kindConfig(), true, true},
		{"aws", awsConfig(), true, false},
		{"kind, cluster has one", kindConfig("metricsServer", "false"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := mustRun(t, tc.config).release("metrics-server")
			if (v != nil) != tc.installs {
				t.Fatalf("metrics-server installed: %v, want %v", v != nil, tc.installs)
			}
			if v == nil {
				return
			}
			if !strings.HasPrefix(get(v, "version").(string), "3.") || get(v, "repositoryOpts.repo") != "https://kubernetes-sigs.github.io/metrics-server/" {
				t.Errorf("chart %v from %v: want the pinned kubernetes-sigs chart", get(v, "version"), get(v, "repositoryOpts.repo"))
			}
			insecure := strings.Contains(fmt.Sprint(get(v, "values.args")), "--kubelet-insecure-tls")
			if insecure != tc.insecure {
				t.Errorf("--kubelet-insecure-tls: %v, want %v", insecure, tc.insecure)
			}
		})
	}
}

// The Cluster Autoscaler runs on EKS alone, discovers the node group by the
// tags EKS puts on its Auto Scaling group, within the group's nodeMin and
// nodeMax, and may resize or terminate only groups tagged for this cluster:
// the "Minimal IAM Permissions Policy" of cluster-autoscaler/cloudprovider/
// aws/README.md, and a version whose minor matches Kubernetes'.
func TestClusterAutoscalerFollowsThePodsWithinNodeMinAndMax(t *testing.T) {
	if v := mustRun(t, kindConfig()).release("cluster-autoscaler"); v != nil {
		t.Error("a Cluster Autoscaler on kind, which has no node groups")
	}
	for _, tc := range []struct{ min, max, eks string }{{"3", "6", "1.35"}, {"2", "12", "1.35"}} {
		t.Run(tc.min+"-"+tc.max, func(t *testing.T) {
			s := mustRun(t, awsConfig("nodeMin", tc.min, "nodeMax", tc.max, "eksVersion", tc.eks))
			cluster := "switchboard-prod"
			ng := s0(t, s, "eks/nodeGroup:NodeGroup")
			if fmt.Sprint(get(ng, "scalingConfig.minSize"), get(ng, "scalingConfig.maxSize")) != tc.min+" "+tc.max {
				t.Errorf("node group scales %v to %v, want nodeMin %s to nodeMax %s", get(ng, "scalingConfig.minSize"), get(ng, "scalingConfig.maxSize"), tc.min, tc.max)
			}
			tags := ng["tags"].(map[string]any)
			if tags[iampolicy.AutoscalerEnabledTag] != "true" || tags[iampolicy.AutoscalerClusterTag(cluster)] != "owned" {
				t.Errorf("node group tags %v: want the autoscaler's discovery tags", tags)
			}
			ca := s.release("cluster-autoscaler")
			if ca == nil {
				t.Fatal("no Cluster Autoscaler on AWS")
			}
			if get(ca, "values.autoDiscovery.clusterName") != cluster || get(ca, "values.awsRegion") != "eu-west-1" {
				t.Errorf("autoscaler discovers %v in %v, want %s in eu-west-1", get(ca, "values.autoDiscovery.clusterName"), get(ca, "values.awsRegion"), cluster)
			}
			if tag, _ := get(ca, "values.image.tag").(string); !strings.HasPrefix(tag, "v"+tc.eks+".") {
				t.Errorf("autoscaler %v on EKS %s: want the same minor", tag, tc.eks)
			}
			role := s.named(t, "iam/role:Role", "autoscaling-cluster-autoscaler")
			if !strings.Contains(role["assumeRolePolicy"].(string), `"system:serviceaccount:kube-system:cluster-autoscaler"`) {
				t.Errorf("trust %v: want the autoscaler's service account only", role["assumeRolePolicy"])
			}
			sa, _ := get(ca, "values.rbac.serviceAccount").(map[string]any)
			if annotations, _ := sa["annotations"].(map[string]any); sa["name"] != "cluster-autoscaler" || annotations["eks.amazonaws.com/role-arn"] != "arn:aws:mock:::autoscaling-cluster-autoscaler" {
				t.Errorf("service account %v: want cluster-autoscaler with its IRSA role", sa)
			}
			var doc iampolicy.Document
			if err := json.Unmarshal([]byte(s.named(t, "iam/rolePolicy:RolePolicy", "autoscaling-cluster-autoscaler")["policy"].(string)), &doc); err != nil {
				t.Fatal(err)
			}
			mutating := 0
			for _, st := range doc.Statement {
				for _, a := range st.Action {
					readOnly := strings.Contains(a, ":Describe") || strings.Contains(a, ":Get")
					switch {
					case readOnly && a == "eks:DescribeNodegroup":
						if fmt.Sprint(st.Resource) != "[arn:aws:eks:*:*:nodegroup/"+cluster+"/*/*]" {
							t.Errorf("%s on %v: want this cluster's node groups", a, st.Resource)
						}
					case readOnly:
					default:
						mutating++
						eq := st.Condition["StringEquals"]
						if !slices.Equal(eq["aws:ResourceTag/"+iampolicy.AutoscalerClusterTag(cluster)], iampolicy.Values{"owned"}) || !slices.Equal(eq["aws:ResourceTag/"+iampolicy.AutoscalerEnabledTag], iampolicy.Values{"true"}) {
							t.Errorf("%s with conditions %v: want the cluster's autoscaling tags", a, st.Condition)
						}
					}
				}
			}
			if mutating != 2 {
				t.Errorf("%d mutating actions, want SetDesiredCapacity and TerminateInstanceInAutoScalingGroup", mutating)
			}
		})
	}
}

// Sanity rule: at maxReplicas, the chat pods' requests fit in 80 % of
// nodeMax nodes (the rest: EKS's kube-reserved and eviction threshold, the
// DaemonSets, the add-ons and monitoring), and one pod in 80 % of one node;
// otherwise the HPA asks for pods that stay Pending at nodeMax. Every stack
// file holds it (TestStackFilesDeclareTheirTopology runs them).
func TestAutoscalingSettingsAreRefusedWhenTheyCannotAct(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string
		want   string // "" = accepted
	}{
		{"prod sizes", awsConfig("maxReplicas", "20", "cpuRequest", "500m", "memoryRequest", "512Mi", "nodeMax", "9"), ""},
		// 29 × 500m = 14.5 vCPU > 0.8 × 9 × 2.
		{"more pods than nodeMax holds", awsConfig("maxReplicas", "29", "cpuRequest", "500m", "nodeMax", "9"), "switchboard:maxReplicas"},
		// 10 × 6Gi = 60Gi > 0.8 × 9 × 8Gi.
		{"memory past nodeMax", awsConfig("maxReplicas", "10", "memoryRequest", "6Gi", "memoryLimit", "6Gi", "nodeMax", "9"), "switchboard:maxReplicas"},
		{"a pod larger than a node", awsConfig("cpuRequest", "2", "nodeInstanceType", "m6i.large"), "switchboard:cpuRequest"},
		{"bigger nodes hold it", awsConfig("maxReplicas", "29", "cpuRequest", "500m", "nodeMax", "9", "nodeInstanceType", "c7g.xlarge"), ""},
		{"unknown instance type is not checked", awsConfig("maxReplicas", "29", "cpuRequest", "500m", "nodeMax", "9", "nodeInstanceType", "hpc7g.16xlarge"), ""},
		{"bad cpu quantity", awsConfig("cpuRequest", "half"), "switchboard:cpuRequest"},
		{"no connections per pod", kindConfig("connectionsPerPod", "0"), "switchboard:connectionsPerPod"},
		{"prometheus url with a path", kindConfig("prometheusUrl", "http://prometheus:9090/api"), "switchboard:prometheusUrl"},
		{"no region", func() map[string]string { c := awsConfig(); delete(c, "aws:region"); return c }(), "aws:region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "aws:region" {
				t.Setenv("AWS_REGION", "")
			}
			_, err := run(tc.config)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err %v: want a refusal naming %s", err, tc.want)
			}
		})
	}
}

// Each Cluster Autoscaler image has the minor of the EKS version it serves
// ("We recommend using Cluster Autoscaler with the Kubernetes control
// plane version for which it was meant", cluster-autoscaler README).
func TestClusterAutoscalerImagesMatchTheirEKSMinor(t *testing.T) {
	for eks, tag := range autoscaling.AutoscalerImages {
		if !strings.HasPrefix(tag, "v"+eks+".") {
			t.Errorf("EKS %s runs Cluster Autoscaler %s", eks, tag)
		}
	}
}

// prometheus-adapter runs unless prometheusAdapter is false (a cluster
// that serves custom.metrics.k8s.io already).
func TestPrometheusAdapterCanBeLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name     string
		config   map[string]string
		installs bool
	}{
		{"kind", kindConfig(), true},
		{"aws", awsConfig(), true},
		{"kind, prometheusAdapter false", kindConfig("prometheusAdapter", "false"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, d := range mustRun(t, tc.config).of("apps/v1:Deployment") {
				if strings.Contains(d.Name, "adapter") {
					n++
				}
			}
			if (n > 0) != tc.installs {
				t.Errorf("%d prometheus-adapter Deployments, want it installed: %v", n, tc.installs)
			}
		})
	}
}
