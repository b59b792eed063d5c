package cluster

import (
	"maps"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

// nodeGroupTags are the stack's tags and the Cluster Autoscaler's discovery
// tags, which EKS also puts on the group's Auto Scaling group and which the
// autoscaler's IAM conditions require.
func nodeGroupTags(args Args) pulumi.StringMap {
	tags := maps.Clone(args.Tags)
	if tags == nil {
		tags = pulumi.StringMap{}
	}
	tags[iampolicy.AutoscalerEnabledTag] = pulumi.String("true")
	tags[iampolicy.AutoscalerClusterTag(args.Name)] = pulumi.String("owned")
	return tags
}
