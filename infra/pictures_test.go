package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// pictureKinds are the Kubernetes kinds the topology pictures show, by the
// word they show them with; the Services, ConfigMaps, Secrets and RBAC
// around them are left out to keep the pictures readable.
var pictureKinds = map[string]string{
	"apps/v1:StatefulSet":                               "StatefulSet",
	"apps/v1:Deployment":                                "Deployment",
	"batch/v1:Job":                                      "Job",
	"autoscaling/v2:HorizontalPodAutoscaler":            "HPA",
	"policy/v1:PodDisruptionBudget":                     "PDB",
	"networking.k8s.io/v1:Ingress":                      "Ingress",
	"networking.k8s.io/v1:NetworkPolicy":                "NetworkPolicies",
	"monitoring.coreos.com/v1:ServiceMonitor":           "ServiceMonitor",
	"monitoring.coreos.com/v1:PrometheusRule":           "PrometheusRule",
	"aws:ec2/vpc:Vpc":                                   "VPC",
	"aws:ec2/subnet:Subnet":                             "subnets",
	"aws:ec2/natGateway:NatGateway":                     "NAT gateway",
	"aws:ec2/internetGateway:InternetGateway":           "internet gateway",
	"aws:ec2/flowLog:FlowLog":                           "flow logs",
	"aws:eks/cluster:Cluster":                           "EKS cluster",
	"aws:eks/nodeGroup:NodeGroup":                       "node group",
	"aws:elasticache/replicationGroup:ReplicationGroup": "ElastiCache",
	"aws:rds/instance:Instance":                         "RDS",
	"aws:cloudwatch/metricAlarm:MetricAlarm":            "CloudWatch alarms",
	"aws:secretsmanager/secret:Secret":                  "Secrets Manager",
}

// pictured is what a stack declares that its picture must name: the kinds
// above, each workload ("chat Deployment"), NetworkPolicy and namespace by
// name, each Helm chart, and the sizes that Pulumi.<stack>.yaml sets.
func pictured(s *stack) []string {
	var want []string
	for _, r := range s.resources {
		m := plain(resource.NewObjectProperty(r.Inputs)).(map[string]any)
		kind := r.Type[strings.Index(r.Type, ":")+1:]
		if strings.HasPrefix(r.Type, "aws:") {
			kind = r.Type
		}
		if w, ok := pictureKinds[kind]; ok {
			want = append(want, w)
		}
		name := get(m, "metadata.name")
		if name == nil { // generated from the resource's name (the bootstrap Job)
			name = r.Name
		}
		switch kind {
		case "apps/v1:Deployment", "apps/v1:StatefulSet", "batch/v1:Job":
			want = append(want, fmt.Sprint(name, " ", pictureKinds[kind]))
		case "networking.k8s.io/v1:NetworkPolicy":
			want = append(want, fmt.Sprint(name))
		case "core/v1:Namespace":
			want = append(want, fmt.Sprint("namespace ", name))
		case "helm.sh/v3:Release":
			want = append(want, fmt.Sprint(m["chart"]))
		case "core/v1:Service":
			if get(m, "spec.type") == "NodePort" {
				want = append(want, fmt.Sprint("NodePort ", get(m, "spec.ports.0.nodePort")))
			}
		case "autoscaling/v2:HorizontalPodAutoscaler":
			want = append(want, fmt.Sprintf("%v-%v pods", get(m, "spec.minReplicas"), get(m, "spec.maxReplicas")))
		case "aws:eks/nodeGroup:NodeGroup":
			want = append(want, fmt.Sprintf("%v-%v nodes", get(m, "scalingConfig.minSize"), get(m, "scalingConfig.maxSize")))
		case "aws:rds/instance:Instance":
			if m["multiAz"] == true {
				want = append(want, "RDS PostgreSQL Multi-AZ")
			}
		case "aws:elasticache/replicationGroup:ReplicationGroup":
			want = append(want, fmt.Sprintf("primary + %v replicas", get(m, "numCacheClusters").(float64)-1))
		}
	}
	return want
}

// pictureText is every label of a Graphviz source, one line each, as dot
// reads it: a source dot refuses fails the test.
func pictureText(t *testing.T, path string) string {
	t.Helper()
	if _, err := exec.LookPath("dot"); err != nil {
		t.Fatal("Graphviz's dot is not installed: run make deps (apt-get install -y graphviz)")
	}
	out, err := exec.Command("dot", "-Tjson", path).Output()
	if err != nil {
		t.Fatalf("dot -Tjson %s: %v", path, err)
	}
	var g struct {
		Label   string
		Objects []struct{ Label string }
		Edges   []struct{ Label string }
	}
	if err := json.Unmarshal(out, &g); err != nil {
		t.Fatalf("dot -Tjson %s: %v", path, err)
	}
	labels := []string{g.Label}
	for _, o := range g.Objects {
		labels = append(labels, o.Label)
	}
	for _, e := range g.Edges {
		labels = append(labels, e.Label)
	}
	// Graphviz's line breaks, centred and left-justified.
	return strings.NewReplacer(`\n`, " ", `\l`, " ").Replace(strings.Join(labels, "\n"))
}

// The topology pictures of docs/img name what the stacks deploy with the
// stack files' settings.
func TestTopologyPicturesNameWhatTheStacksDeploy(t *testing.T) {
	for name, picture := range map[string]string{"dev": "topology-kind", "prod": "topology-aws"} {
		t.Run(picture, func(t *testing.T) {
			s := &stack{name: name}
			if err := s.run(stackFileConfig(t, name)); err != nil {
				t.Fatalf("program: %v", err)
			}
			text := pictureText(t, "../docs/img/"+picture+".dot")
			missing := map[string]bool{}
			for _, w := range pictured(s) {
				if !strings.Contains(text, w) && !missing[w] {
					missing[w] = true
					t.Errorf("docs/img/%s.dot does not name %q", picture, w)
				}
			}
		})
	}
}
