package iampolicy

// Tags by which the Cluster Autoscaler discovers a cluster's node groups;
// EKS puts both on a managed node group's Auto Scaling group.
// https://docs.aws.amazon.com/eks/latest/userguide/managed-node-groups.html
const (
	AutoscalerEnabledTag = "k8s.io/cluster-autoscaler/enabled"
	autoscalerClusterTag = "k8s.io/cluster-autoscaler/"
)

// AutoscalerClusterTag is the tag naming the cluster, valued "owned".
func AutoscalerClusterTag(cluster string) string { return autoscalerClusterTag + cluster }

// ClusterAutoscaler is the Cluster Autoscaler's policy as its AWS provider
// documents it ("Minimal IAM Permissions Policy", cluster-autoscaler/
// cloudprovider/aws/README.md): it may read every group and instance type,
// but change the size of, or terminate instances in, only the groups
// tagged for this cluster.
func ClusterAutoscaler(cluster string) Document {
	return New(
		Statement{
			Sid:    "ScaleOnlyThisClustersGroups",
			Effect: "Allow",
			Action: []string{
				"autoscaling:SetDesiredCapacity",
				"autoscaling:TerminateInstanceInAutoScalingGroup",
			},
			Resource: []string{"*"},
			Condition: Conditions{"StringEquals": {
				"aws:ResourceTag/" + AutoscalerClusterTag(cluster): {"owned"},
				"aws:ResourceTag/" + AutoscalerEnabledTag:          {"true"},
			}},
		},
		Statement{
			Sid:    "Discover",
			Effect: "Allow",
			Action: []string{
				"autoscaling:DescribeAutoScalingGroups",
				"autoscaling:DescribeAutoScalingInstances",
				"autoscaling:DescribeLaunchConfigurations",
				"autoscaling:DescribeScalingActivities",
				"autoscaling:DescribeTags",
				"ec2:DescribeImages",
				"ec2:DescribeInstanceTypes",
				"ec2:DescribeLaunchTemplateVersions",
				"ec2:GetInstanceTypesFromInstanceRequirements",
			},
			// Describe and Get calls take no resource-level permissions.
			Resource: []string{"*"},
		},
		Statement{
			Sid:      "DescribeThisClustersNodeGroups",
			Effect:   "Allow",
			Action:   []string{"eks:DescribeNodegroup"},
			Resource: []string{"arn:aws:eks:*:*:nodegroup/" + cluster + "/*/*"},
		},
	)
}
