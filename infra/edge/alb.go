package edge

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	helmv3 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/helm/v3"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	networkingv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/networking/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/cluster"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/naming"
)

// controllerAccount is the AWS Load Balancer Controller's service account.
const controllerAccount = "aws-load-balancer-controller"

// IdleTimeout is the ALB's idle timeout for a server that pings every
// ping: three pings, so that two lost pings never cut a connection.
func IdleTimeout(ping time.Duration) time.Duration { return 3 * ping }

// ALBArgs configure the AWS edge.
type ALBArgs struct {
	Cluster        *cluster.Cluster
	VpcID          pulumi.StringInput
	Namespace      pulumi.StringInput
	Service        pulumi.StringInput // the chat ClusterIP Service
	ServicePort    int
	ChartVersion   string
	CertificateARN string
	WAFACLARN      string // optional
	Stickiness     time.Duration
	PingInterval   time.Duration
	// DrainWindow is the workload's drain: the targets' deregistration delay.
	DrainWindow  time.Duration
	LoadBalancer string // the ALB's name, for the alarms' lookup
	Tags         pulumi.StringMap
}

// ALB is the component: the controller and the chat Ingress it turns into
// an Application Load Balancer.
type ALB struct {
	pulumi.ResourceState
	Hostname pulumi.StringOutput // the ALB's DNS name
}

// NewALB declares the AWS edge.
func NewALB(ctx *pulumi.Context, name string, args ALBArgs, opts ...pulumi.ResourceOption) (*ALB, error) {
	a := &ALB{}
	if err := ctx.RegisterComponentResource("switchboard:index:ALB", name, a, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(a)
	policy, err := controllerPolicy().JSON()
	if err != nil {
		return nil, err
	}
	role, err := cluster.ServiceAccountRole(ctx, name+"-controller", args.Cluster, "kube-system", controllerAccount, args.Tags, parent)
	if err != nil {
		return nil, err
	}
	if _, err := iam.NewRolePolicy(ctx, name+"-controller", &iam.RolePolicyArgs{Role: role.ID(), Policy: pulumi.String(policy)}, parent); err != nil {
		return nil, fmt.Errorf("edge %s: controller policy: %w", name, err)
	}
	controller, err := helmv3.NewRelease(ctx, name+"-controller", &helmv3.ReleaseArgs{
		Name:           pulumi.String(controllerAccount),
		Chart:          pulumi.String("aws-load-balancer-controller"),
		Version:        pulumi.String(args.ChartVersion),
		Namespace:      pulumi.String("kube-system"),
		RepositoryOpts: &helmv3.RepositoryOptsArgs{Repo: pulumi.String("https://aws.github.io/eks-charts")},
		Values: pulumi.Map{
			"clusterName": args.Cluster.Name,
			"vpcId":       args.VpcID,
			"serviceAccount": pulumi.Map{
				"name":        pulumi.String(controllerAccount),
				"annotations": pulumi.Map{"eks.amazonaws.com/role-arn": role.Arn},
			},
		},
	}, parent, pulumi.Provider(args.Cluster.Provider))
	if err != nil {
		return nil, fmt.Errorf("edge %s: controller: %w", name, err)
	}
	annotations, err := ingressAnnotations(args)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", name, err)
	}
	ingress, err := networkingv1.NewIngress(ctx, name, &networkingv1.IngressArgs{
		Metadata: &metav1.ObjectMetaArgs{
			Name: pulumi.String(naming.Chat), Namespace: args.Namespace, Labels: naming.Labels(naming.Chat),
			Annotations: pulumi.ToStringMap(annotations),
		},
		Spec: &networkingv1.IngressSpecArgs{
			IngressClassName: pulumi.String("alb"),
			DefaultBackend: &networkingv1.IngressBackendArgs{Service: &networkingv1.IngressServiceBackendArgs{
				Name: args.Service, Port: &networkingv1.ServiceBackendPortArgs{Number: pulumi.Int(args.ServicePort)},
			}},
		},
	}, parent, pulumi.Provider(args.Cluster.Provider), pulumi.DependsOn([]pulumi.Resource{controller}))
	if err != nil {
		return nil, fmt.Errorf("edge %s: ingress: %w", name, err)
	}
	a.Hostname = ingress.Status.LoadBalancer().Ingress().Index(pulumi.Int(0)).Hostname().Elem()
	return a, ctx.RegisterResourceOutputs(a, pulumi.Map{"hostname": a.Hostname})
}

// ingressAnnotations configure the ALB the controller makes of the Ingress.
func ingressAnnotations(args ALBArgs) (map[string]string, error) {
	secs := func(d time.Duration) int { return int(math.Ceil(d.Seconds())) }
	listen, err := json.Marshal([]map[string]int{{"HTTP": 80}, {"HTTPS": 443}})
	if err != nil {
		return nil, err
	}
	tg := []string{
		// Each client returns to its instance while the cookie lasts.
		"stickiness.enabled=true",
		"stickiness.type=lb_cookie",
		fmt.Sprintf("stickiness.lb_cookie.duration_seconds=%d", secs(args.Stickiness)),
		// A draining pod keeps its connections until its drain is over.
		fmt.Sprintf("deregistration_delay.timeout_seconds=%d", secs(args.DrainWindow)),
	}
	an := map[string]string{
		"alb.ingress.kubernetes.io/scheme":                       "internet-facing",
		"alb.ingress.kubernetes.io/target-type":                  "ip",
		"alb.ingress.kubernetes.io/load-balancer-name":           args.LoadBalancer,
		"alb.ingress.kubernetes.io/listen-ports":                 string(listen),
		"alb.ingress.kubernetes.io/ssl-redirect":                 "443",
		"alb.ingress.kubernetes.io/certificate-arn":              args.CertificateARN,
		"alb.ingress.kubernetes.io/ssl-policy":                   "ELBSecurityPolicy-TLS13-1-2-2021-06",
		"alb.ingress.kubernetes.io/target-group-attributes":      strings.Join(tg, ","),
		"alb.ingress.kubernetes.io/load-balancer-attributes":     fmt.Sprintf("idle_timeout.timeout_seconds=%d", secs(IdleTimeout(args.PingInterval))),
		"alb.ingress.kubernetes.io/healthcheck-path":             "/ready",
		"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "5",
		"alb.ingress.kubernetes.io/healthy-threshold-count":      "2",
		"alb.ingress.kubernetes.io/unhealthy-threshold-count":    "2",
	}
	if args.WAFACLARN != "" {
		an["alb.ingress.kubernetes.io/wafv2-acl-arn"] = args.WAFACLARN
	}
	return an, nil
}

// controllerPolicy is what the AWS Load Balancer Controller does: read the
// VPC, manage load balancers, target groups, listeners and their security
// groups, and attach WAF and certificates. Every action is named.
func controllerPolicy() iampolicy.Document {
	return iampolicy.New(
		iampolicy.Allow([]string{
			"ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
			"ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
			"ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
			"ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
			"ec2:GetSecurityGroupsForVpc",
			"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
			"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
			"elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
			"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
			"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
			"elasticloadbalancing:DescribeTrustStores", "elasticloadbalancing:DescribeListenerAttributes",
			"elasticloadbalancing:DescribeCapacityReservation",
			"acm:ListCertificates", "acm:DescribeCertificate",
			"wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
			"shield:GetSubscriptionState",
			"iam:ListServerCertificates", "iam:GetServerCertificate", "cognito-idp:DescribeUserPoolClient",
		}, "*"),
		iampolicy.Allow([]string{
			"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:CreateSecurityGroup",
			"ec2:DeleteSecurityGroup", "ec2:CreateTags", "ec2:DeleteTags",
		}, "*"),
		iampolicy.Allow([]string{
			"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup",
			"elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
			"elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule",
			"elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
			"elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
			"elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
			"elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
			"elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
			"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
			"elasticloadbalancing:SetWebAcl", "elasticloadbalancing:ModifyListener",
			"elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
			"elasticloadbalancing:ModifyRule", "elasticloadbalancing:ModifyListenerAttributes",
		}, "*"),
		iampolicy.Statement{
			Effect:    "Allow",
			Action:    []string{"iam:CreateServiceLinkedRole"},
			Resource:  []string{"*"},
			Condition: map[string]map[string]string{"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
		},
	)
}
