package autoscaling

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/cluster"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

const (
	autoscalerRepo = "https://kubernetes.github.io/autoscaler"
	// The chart whose ClusterRole lets every image of AutoscalerImages list
	// and watch what it watches; otherwise the image waits on an informer
	// forever, Ready but never scaling. 9.43.1 lacked VolumeAttachments,
	// which images from 1.32 watch (kubernetes/autoscaler#7663); 1.35 also
	// watches the DRA objects (granted from 9.54.0). 9.55.1: appVersion
	// 1.35.0, the newest minor here; later charts add ProvisioningRequest
	// and CapacityBuffer rights the stack's flags leave unused.
	// TestAutoscalerChartGrantsWhatEveryImageWatches holds it.
	autoscalerChart   = "9.55.1"
	autoscalerAccount = "cluster-autoscaler"
)

// AutoscalerImages: the Cluster Autoscaler's minor must match Kubernetes'
// (cluster-autoscaler README, "Releases"), so the image follows eksVersion:
// one per minor of infra/eksaddon. 1.34 and 1.35: the releases
// cluster-autoscaler-1.34.4 and cluster-autoscaler-1.35.1
// (github.com/kubernetes/autoscaler/releases, as
// aws-ia/terraform-aws-eks-blueprints-addons#516 maps them).
var AutoscalerImages = map[string]string{
	"1.32": "v1.32.1",
	"1.33": "v1.33.0",
	"1.34": "v1.34.4",
	"1.35": "v1.35.1",
}

// NodeArgs configure the Cluster Autoscaler.
type NodeArgs struct {
	Cluster    *cluster.Cluster
	EKSVersion string
	Region     string
	Tags       pulumi.StringMap
}

// Cluster Autoscaler rather than Karpenter: the stack runs one managed node
// group of one instance type, which the autoscaler scales within the
// group's own bounds (nodeMin, nodeMax), discovered by the tags EKS puts on
// the group; Karpenter would replace the node group with its own
// provisioning, interruption queue and node IAM.
func clusterAutoscaler(ctx *pulumi.Context, name string, args NodeArgs, parent pulumi.ResourceOption) error {
	image, ok := AutoscalerImages[args.EKSVersion]
	if !ok {
		return fmt.Errorf("autoscaling %s: no Cluster Autoscaler for EKS %s: want one of %v", name, args.EKSVersion, slices.Sorted(maps.Keys(AutoscalerImages)))
	}
	policy := args.Cluster.Name.ApplyT(func(cluster string) (string, error) {
		return iampolicy.ClusterAutoscaler(cluster).JSON()
	}).(pulumi.StringOutput)
	role, err := cluster.ServiceAccountRole(ctx, name+"-cluster-autoscaler", args.Cluster, namespace, autoscalerAccount, args.Tags, parent)
	if err != nil {
		return err
	}
	attached, err := iam.NewRolePolicy(ctx, name+"-cluster-autoscaler", &iam.RolePolicyArgs{Role: role.ID(), Policy: policy}, parent)
	if err != nil {
		return fmt.Errorf("autoscaling %s: cluster autoscaler policy: %w", name, err)
	}
	if _, err := helmv3.NewRelease(ctx, name+"-cluster-autoscaler", &helmv3.ReleaseArgs{
		Name: pulumi.String(autoscalerAccount), Chart: pulumi.String("cluster-autoscaler"), Version: pulumi.String(autoscalerChart),
		Namespace: pulumi.String(namespace), RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String(autoscalerRepo)},
		Values: pulumi.Map{
			"cloudProvider": pulumi.String("aws"),
			"awsRegion":     pulumi.String(args.Region),
			// The node group's Auto Scaling group, found by its tags, with
			// its min and max: nodeMin and nodeMax.
			"autoDiscovery": pulumi.Map{"clusterName": args.Cluster.Name},
			"image":         pulumi.Map{"tag": pulumi.String(image)},
			"rbac": pulumi.Map{"serviceAccount": pulumi.Map{
				"create": pulumi.Bool(true), "name": pulumi.String(autoscalerAccount),
				"annotations": pulumi.Map{"eks.amazonaws.com/role-arn": role.Arn},
			}},
			// The flags of the EKS user guide's Cluster Autoscaler steps.
			"extraArgs": pulumi.Map{
				"expander":                    pulumi.String("least-waste"),
				"balance-similar-node-groups": pulumi.Bool(true),
				"skip-nodes-with-system-pods": pulumi.Bool(false),
			},
		},
	}, parent, pulumi.Provider(args.Cluster.Provider),
		// Its permissions outlive it on destroy.
		pulumi.DependsOn([]pulumi.Resource{attached})); err != nil {
		return fmt.Errorf("autoscaling %s: cluster autoscaler: %w", name, err)
	}
	return nil
}
