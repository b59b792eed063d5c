package stackconfig

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// headroom is the share of a node's CPU and memory that chat pods may
// take: the rest is EKS's kube-reserved and eviction threshold (about 10 %
// of an m6i.large), the DaemonSets (VPC CNI, kube-proxy, EBS CSI, node
// exporter) and the cluster's add-ons and monitoring.
const headroom = 0.8

// autoscaling reads the autoscaling keys.
func (r *reader) autoscaling(c *Config) {
	r.integer("connectionsPerPod", &c.ConnectionsPerPod, 1, 1_000_000)
	r.duration("scaleDownWindow", &c.ScaleDownWindow)
	// The API's bound on stabilizationWindowSeconds (autoscaling/v2
	// HPAScalingRules: "must be greater than or equal to zero and less
	// than or equal to 3600 (one hour)"), in whole seconds.
	if w := c.ScaleDownWindow; w > time.Hour || w%time.Second != 0 {
		r.fail("scaleDownWindow", w.String(), "a whole number of seconds up to 1h, like 5m or 30s")
	}
	r.boolean("metricsServer", &c.MetricsServer)
	r.boolean("prometheusAdapter", &c.PrometheusAdapter)
	r.image("prometheusAdapterImage", &c.AdapterImage)
	if v := r.cfg.Get("prometheusUrl"); v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			r.fail("prometheusUrl", v, "the Prometheus server's base URL, like http://prometheus.monitoring.svc:9090")
			return
		}
		c.PrometheusURL = v
	}
}

// fitsNodes refuses an autoscaler that cannot act: maxReplicas chat pods,
// at their requests, must fit in headroom of nodeMax nodes, and one pod in
// headroom of one node, or the HPA asks for pods that stay Pending however
// far the node autoscaler goes. Instance types outside EC2's naming rule
// below are not checked.
func (r *reader) fitsNodes(c Config) {
	nodeCPU, nodeMem, known := instanceCapacity(c.AWS.NodeInstanceType)
	cpu, errCPU := resource.ParseQuantity(c.CPURequest)
	mem, errMem := resource.ParseQuantity(c.MemoryRequest)
	if errCPU != nil {
		r.fail("cpuRequest", c.CPURequest, "a Kubernetes CPU quantity like 250m or 1")
	}
	if errMem != nil {
		r.fail("memoryRequest", c.MemoryRequest, "a Kubernetes memory quantity like 256Mi or 1Gi")
	}
	if !known || errCPU != nil || errMem != nil {
		return
	}
	podCPU, podMem := float64(cpu.MilliValue()), float64(mem.Value())
	switch {
	case podCPU > headroom*nodeCPU || podMem > headroom*nodeMem:
		r.fail("cpuRequest", c.CPURequest+", memoryRequest "+c.MemoryRequest,
			fmt.Sprintf("a pod that fits %.0f %% of one %s node", 100*headroom, c.AWS.NodeInstanceType))
	case float64(c.MaxReplicas)*podCPU > headroom*nodeCPU*float64(c.AWS.NodeMax) ||
		float64(c.MaxReplicas)*podMem > headroom*nodeMem*float64(c.AWS.NodeMax):
		r.fail("maxReplicas", strconv.Itoa(c.MaxReplicas), fmt.Sprintf(
			"at most the pods (%s CPU, %s memory each) that fit %.0f %% of nodeMax (%d) %s nodes, or a larger nodeMax",
			c.CPURequest, c.MemoryRequest, 100*headroom, c.AWS.NodeMax, c.AWS.NodeInstanceType))
	}
}

// gibPerVCPU by instance class: compute, general purpose, burstable,
// memory optimised.
var gibPerVCPU = map[byte]float64{'c': 2, 'm': 4, 't': 4, 'r': 8}

// instanceCapacity is an EC2 instance type's millicores and bytes, from
// its name: <class><generation>[options].<size>, where large has 2 vCPUs,
// xlarge 4 and Nxlarge 4N, and the class sets the memory per vCPU
// (https://docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html).
// Smaller and metal sizes and other classes are not known.
func instanceCapacity(instanceType string) (milliCPU, bytes float64, known bool) {
	family, size, ok := strings.Cut(instanceType, ".")
	if !ok || family == "" {
		return 0, 0, false
	}
	gib, ok := gibPerVCPU[family[0]]
	if !ok {
		return 0, 0, false
	}
	var vcpu float64
	switch {
	case size == "large":
		vcpu = 2
	case size == "xlarge":
		vcpu = 4
	case strings.HasSuffix(size, "xlarge"):
		n, err := strconv.Atoi(strings.TrimSuffix(size, "xlarge"))
		if err != nil || n < 2 {
			return 0, 0, false
		}
		vcpu = 4 * float64(n)
	default:
		return 0, 0, false
	}
	return 1000 * vcpu, vcpu * gib * (1 << 30), true
}
