// Package placement puts pods on the kind cluster's control-plane node, the
// one infra/kind/cluster.yaml maps the host's ports to and labels
// ingress-ready=true.
//
// The edge runs there because the host's traffic arrives there (see
// infra/edge). The stores run there too: their local-path volumes bind each
// to the node it first ran on, and the node maintenance of a cluster drains
// workers, one at a time. A store on a worker would stay Pending while its
// node is drained and every chat pod would go unready without it; on the
// control-plane node it stays, while the chat pods move between workers
// under their disruption budget.
package placement

import (
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	// IngressReadyLabel marks the node the host's ports reach (kind's Ingress guide).
	IngressReadyLabel = "ingress-ready"
	// ControlPlaneTaint is kubeadm's NoSchedule taint of control-plane nodes,
	// which kind keeps in a cluster with workers.
	ControlPlaneTaint = "node-role.kubernetes.io/control-plane"
)

// OnIngressNode returns the nodeSelector and tolerations of a pod that runs
// on the node labelled ingress-ready=true.
func OnIngressNode() (pulumi.StringMap, corev1.TolerationArray) {
	return pulumi.StringMap{IngressReadyLabel: pulumi.String("true")},
		corev1.TolerationArray{corev1.TolerationArgs{
			Key: pulumi.String(ControlPlaneTaint), Operator: pulumi.String("Exists"), Effect: pulumi.String("NoSchedule"),
		}}
}
