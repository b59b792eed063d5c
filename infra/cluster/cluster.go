// Package cluster is the prod stack's EKS cluster: the control plane, a
// managed node group in the private subnets whose launch template keeps
// pods from the instance metadata, the OIDC provider for IAM roles
// of service accounts (IRSA), pinned add-ons, and a Kubernetes provider built
// from the cluster's own outputs.
package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/eks"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

// Args configure the cluster.
type Args struct {
	Name             string
	Version          string
	PublicSubnets    pulumi.StringArrayInput
	PrivateSubnets   pulumi.StringArrayInput
	NodeInstanceType string
	NodeMin, NodeMax int
	Addons           map[string]string // name → pinned version
	Tags             pulumi.StringMap
	// APIAllowedCIDRs may reach the public API endpoint.
	APIAllowedCIDRs []string
	// Region and Profile (optional) go to the kubeconfig's `aws eks get-token`.
	Region, Profile string
}

// Cluster is the component.
type Cluster struct {
	pulumi.ResourceState
	Name pulumi.StringOutput
	// SecurityGroup is the cluster security group, which the managed nodes
	// and so the pods carry: the stores admit it alone.
	SecurityGroup pulumi.StringOutput
	// The IAM OIDC provider of the cluster's issuer: IRSA roles trust it.
	OIDCProviderARN pulumi.StringOutput
	OIDCIssuer      pulumi.StringOutput // without https://
	Kubeconfig      pulumi.StringOutput
	Provider        *kubernetes.Provider
}

// NodeMetadata are the nodes' instance metadata options: IMDSv2 only,
// and a response hop limit of 1, so that the IMDS's token (PUT) response
// does not survive the extra hop into a pod's network namespace. Pods off
// the host network then cannot read the node's instance profile
// credentials (Amazon EC2 User Guide, "Use the Instance Metadata Service
// to access instance metadata": the hop limit; Amazon EKS Best Practices
// Guide, Security, "Restrict access to the instance profile assigned to
// the worker node"). Pods that call AWS use IRSA instead: the load
// balancer controller, the Cluster Autoscaler, the EBS CSI controller,
// the chat pods and the database bootstrap Job. The VPC CNI (aws-node)
// runs on the host network and keeps its access.
var NodeMetadata = struct {
	HTTPEndpoint, HTTPTokens string
	HopLimit                 int
}{"enabled", "required", 1}

// AddonConfiguration are the add-ons' configuration values. The VPC CNI
// enforces NetworkPolicies only with its network policy agent enabled
// (Amazon EKS User Guide, "Restrict Pod network traffic with Kubernetes
// network policies": VPC CNI 1.14 or later, EKS 1.25 or later, and the
// add-on's enableNetworkPolicy set to "true"; infra/eksaddon refuses an
// older VPC CNI).
var AddonConfiguration = map[string]string{
	"vpc-cni": `{"enableNetworkPolicy":"true"}`,
}

// nodeTemplate is the node group's launch template: only the metadata
// options. With no security group in it, EKS gives the nodes the cluster
// security group, as without a template (Amazon EKS User Guide, "Customize
// managed nodes with launch templates").
func nodeTemplate(ctx *pulumi.Context, name string, tags pulumi.StringMap, parent pulumi.ResourceOption) (*ec2.LaunchTemplate, error) {
	lt, err := ec2.NewLaunchTemplate(ctx, name, &ec2.LaunchTemplateArgs{
		Description: pulumi.String("EKS nodes: IMDSv2 only, hop limit 1"),
		MetadataOptions: &ec2.LaunchTemplateMetadataOptionsArgs{
			HttpEndpoint:            pulumi.String(NodeMetadata.HTTPEndpoint),
			HttpTokens:              pulumi.String(NodeMetadata.HTTPTokens),
			HttpPutResponseHopLimit: pulumi.Int(NodeMetadata.HopLimit),
		},
		Tags: tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: launch template: %w", name, err)
	}
	return lt, nil
}

// awsManaged is the ARN of an AWS-managed policy.
func awsManaged(name string) string { return "arn:aws:iam::aws:policy/" + name }

// New declares the cluster.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Cluster, error) {
	c := &Cluster{}
	if err := ctx.RegisterComponentResource("switchboard:index:Cluster", name, c, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(c)
	clusterRole, err := Role(ctx, name+"-cluster", iampolicy.AssumedBy("eks.amazonaws.com"), args.Tags, parent,
		awsManaged("AmazonEKSClusterPolicy"))
	if err != nil {
		return nil, err
	}
	eksCluster, err := eks.NewCluster(ctx, name, &eks.ClusterArgs{
		Name:    pulumi.String(args.Name),
		RoleArn: clusterRole.Arn,
		Version: pulumi.String(args.Version),
		VpcConfig: &eks.ClusterVpcConfigArgs{
			SubnetIds: pulumi.All(args.PrivateSubnets, args.PublicSubnets).ApplyT(func(v []any) []string {
				return append(slices.Clone(v[0].([]string)), v[1].([]string)...)
			}).(pulumi.StringArrayOutput),
			EndpointPrivateAccess: pulumi.Bool(true),
			EndpointPublicAccess:  pulumi.Bool(true),
			PublicAccessCidrs:     pulumi.ToStringArray(args.APIAllowedCIDRs),
		},
		AccessConfig: &eks.ClusterAccessConfigArgs{
			AuthenticationMode:                      pulumi.String("API"),
			BootstrapClusterCreatorAdminPermissions: pulumi.Bool(true),
		},
		EnabledClusterLogTypes: pulumi.ToStringArray([]string{"api", "audit", "authenticator"}),
		Tags:                   args.Tags,
	}, parent, pulumi.DependsOn(clusterRole.Ready()))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	issuer := eksCluster.Identities.Index(pulumi.Int(0)).Oidcs().Index(pulumi.Int(0)).Issuer().Elem()
	oidc, err := iam.NewOpenIdConnectProvider(ctx, name, &iam.OpenIdConnectProviderArgs{
		Url:           issuer,
		ClientIdLists: pulumi.ToStringArray([]string{"sts.amazonaws.com"}),
		Tags:          args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: OIDC provider: %w", name, err)
	}
	c.OIDCProviderARN = oidc.Arn
	c.OIDCIssuer = issuer.ApplyT(func(u string) string { return strings.TrimPrefix(u, "https://") }).(pulumi.StringOutput)

	nodeRole, err := Role(ctx, name+"-nodes", iampolicy.AssumedBy("ec2.amazonaws.com"), args.Tags, parent,
		awsManaged("AmazonEKSWorkerNodePolicy"), awsManaged("AmazonEC2ContainerRegistryReadOnly"), awsManaged("AmazonEKS_CNI_Policy"))
	if err != nil {
		return nil, err
	}
	template, err := nodeTemplate(ctx, name+"-nodes", args.Tags, parent)
	if err != nil {
		return nil, err
	}
	nodes, err := eks.NewNodeGroup(ctx, name, &eks.NodeGroupArgs{
		ClusterName:   eksCluster.Name,
		NodeRoleArn:   nodeRole.Arn,
		SubnetIds:     args.PrivateSubnets,
		InstanceTypes: pulumi.ToStringArray([]string{args.NodeInstanceType}),
		// A new template version rolls the nodes, MaxUnavailable at a time.
		LaunchTemplate: &eks.NodeGroupLaunchTemplateArgs{
			Id:      template.ID(),
			Version: template.LatestVersion.ApplyT(func(v int) string { return strconv.Itoa(v) }).(pulumi.StringOutput),
		},
		ScalingConfig: &eks.NodeGroupScalingConfigArgs{
			MinSize: pulumi.Int(args.NodeMin), DesiredSize: pulumi.Int(args.NodeMin), MaxSize: pulumi.Int(args.NodeMax),
		},
		UpdateConfig: &eks.NodeGroupUpdateConfigArgs{MaxUnavailable: pulumi.Int(1)},
		Tags:         nodeGroupTags(args),
	}, parent, pulumi.IgnoreChanges([]string{"scalingConfig.desiredSize"}), pulumi.DependsOn(nodeRole.Ready()))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: node group: %w", name, err)
	}

	// The EBS CSI driver provisions the volumes; it acts through its own role.
	ebsRole, err := ServiceAccountRole(ctx, name+"-ebs-csi", c, "kube-system", "ebs-csi-controller-sa", args.Tags, parent,
		awsManaged("service-role/AmazonEBSCSIDriverPolicy"))
	if err != nil {
		return nil, err
	}
	for _, addon := range slices.Sorted(maps.Keys(args.Addons)) {
		// EKS installs vpc-cni, coredns and kube-proxy itself, self-managed:
		// taking them over must overwrite their settings on create too, or
		// the create fails on the conflict (Amazon EKS User Guide, "Create an
		// Amazon EKS add-on"; terraform-aws-modules/eks and EKS Blueprints
		// do the same).
		a := &eks.AddonArgs{
			ClusterName: eksCluster.Name, AddonName: pulumi.String(addon), AddonVersion: pulumi.String(args.Addons[addon]),
			ResolveConflictsOnCreate: pulumi.String("OVERWRITE"), ResolveConflictsOnUpdate: pulumi.String("OVERWRITE"), Tags: args.Tags,
		}
		deps := []pulumi.Resource{nodes}
		if v, ok := AddonConfiguration[addon]; ok {
			a.ConfigurationValues = pulumi.String(v)
		}
		if addon == "aws-ebs-csi-driver" {
			a.ServiceAccountRoleArn = ebsRole.Arn
			deps = append(deps, ebsRole.Ready()...)
		}
		if _, err := eks.NewAddon(ctx, name+"-"+addon, a, parent, pulumi.DependsOn(deps)); err != nil {
			return nil, fmt.Errorf("cluster %s: add-on %s: %w", name, addon, err)
		}
	}

	c.Name = eksCluster.Name
	c.SecurityGroup = eksCluster.VpcConfig.ClusterSecurityGroupId().Elem()
	c.Kubeconfig = pulumi.All(eksCluster.Name, eksCluster.Endpoint, eksCluster.CertificateAuthority.Data().Elem()).ApplyT(func(v []any) string {
		return kubeconfig(v[0].(string), v[1].(string), v[2].(string), args.Region, args.Profile)
	}).(pulumi.StringOutput)
	c.Provider, err = kubernetes.NewProvider(ctx, name, &kubernetes.ProviderArgs{Kubeconfig: c.Kubeconfig}, parent, pulumi.DependsOn([]pulumi.Resource{nodes}))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: kubernetes provider: %w", name, err)
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"name": c.Name, "kubeconfig": c.Kubeconfig})
}

// kubeconfig reaches the cluster with `aws eks get-token` in the stack's
// region (and profile, if the stack has one): it holds no secret.
func kubeconfig(name, endpoint, ca, region, profile string) string {
	token := []string{"eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"}
	if profile != "" {
		token = append(token, "--profile", profile)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster: {server: %[2]s, certificate-authority-data: %[3]s}
users:
- name: %[1]s
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [%[4]s]
contexts:
- name: %[1]s
  context: {cluster: %[1]s, user: %[1]s}
current-context: %[1]s
`, name, endpoint, ca, strings.Join(token, ", "))
}

// IAMRole is an IAM role and the AWS-managed policies attached to it.
type IAMRole struct {
	*iam.Role
	Attachments []pulumi.Resource
}

// Ready is the role with its attachments: whatever acts through the role
// depends on them all, so that it never runs without its permissions, and
// on destroy loses them only after it is gone.
func (r *IAMRole) Ready() []pulumi.Resource {
	return append([]pulumi.Resource{r.Role}, r.Attachments...)
}

// Role is an IAM role with a trust policy and AWS-managed policies attached.
func Role(ctx *pulumi.Context, name string, trust iampolicy.Document, tags pulumi.StringMap, parent pulumi.ResourceOption, managed ...string) (*IAMRole, error) {
	doc, err := trust.JSON()
	if err != nil {
		return nil, err
	}
	return role(ctx, name, pulumi.String(doc), tags, parent, managed...)
}

// ServiceAccountRole is a role that only the Kubernetes service account
// namespace/account may assume (IRSA).
func ServiceAccountRole(ctx *pulumi.Context, name string, c *Cluster, namespace, account string, tags pulumi.StringMap, parent pulumi.ResourceOption, managed ...string) (*IAMRole, error) {
	trust := pulumi.All(c.OIDCProviderARN, c.OIDCIssuer).ApplyT(func(v []any) (string, error) {
		return iampolicy.AssumedByServiceAccount(v[0].(string), v[1].(string), namespace, account).JSON()
	}).(pulumi.StringOutput)
	return role(ctx, name, trust, tags, parent, managed...)
}

func role(ctx *pulumi.Context, name string, trust pulumi.StringInput, tags pulumi.StringMap, parent pulumi.ResourceOption, managed ...string) (*IAMRole, error) {
	prefix, err := awsname.RolePrefix.Prefix(ctx.Project(), ctx.Stack(), name)
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", name, err)
	}
	r, err := iam.NewRole(ctx, name, &iam.RoleArgs{NamePrefix: pulumi.String(prefix), AssumeRolePolicy: trust, Tags: tags}, parent)
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", name, err)
	}
	out := &IAMRole{Role: r}
	for i, arn := range managed {
		a, err := iam.NewRolePolicyAttachment(ctx, fmt.Sprintf("%s-%d", name, i), &iam.RolePolicyAttachmentArgs{
			Role: r.Name, PolicyArn: pulumi.String(arn),
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("role %s: attach %s: %w", name, arn, err)
		}
		out.Attachments = append(out.Attachments, a)
	}
	return out, nil
}
