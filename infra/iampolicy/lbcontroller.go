package iampolicy

// ClusterTag is the tag the AWS Load Balancer Controller puts on every load
// balancer, target group and security group it creates. Its policy lets it
// change and delete only what carries the tag, never the account's others.
const ClusterTag = "elbv2.k8s.aws/cluster"

// LBControllerVersion is the controller whose policy LoadBalancerController
// is: the app version of the aws-load-balancer-controller chart the stacks
// pin (1.13.4).
const LBControllerVersion = "v2.13.4"

// Condition keys on the cluster tag: of the request (what is being
// created or tagged) and of the resource (what exists).
const (
	requestTag  = "aws:RequestTag/" + ClusterTag
	resourceTag = "aws:ResourceTag/" + ClusterTag
)

var (
	// taggedResource: the resource carries the cluster tag.
	taggedResource = Conditions{"Null": {resourceTag: {"false"}}}
	// taggedRequest: the request sets the cluster tag.
	taggedRequest = Conditions{"Null": {requestTag: {"false"}}}
	// retagging: the resource carries the tag and the request leaves it be.
	retagging = Conditions{"Null": {requestTag: {"true"}, resourceTag: {"false"}}}
)

// ELB resources the controller tags.
var (
	balancersAndTargets = []string{
		"arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
		"arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
		"arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
	}
	listenersAndRules = []string{
		"arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
		"arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
		"arn:aws:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
		"arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
	}
	securityGroups = "arn:aws:ec2:*:*:security-group/*"
)

// LoadBalancerController is the controller's IAM policy, statement for
// statement as upstream publishes it for LBControllerVersion
// (kubernetes-sigs/aws-load-balancer-controller, docs/install/iam_policy.json
// at tag v2.13.4). When the pinned chart changes, compare this with that
// file at the new app version.
func LoadBalancerController() Document {
	return New(
		Statement{
			Effect: "Allow", Action: []string{"iam:CreateServiceLinkedRole"}, Resource: []string{"*"},
			Condition: Conditions{"StringEquals": {"iam:AWSServiceName": {"elasticloadbalancing.amazonaws.com"}}},
		},
		Allow([]string{
			"ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
			"ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
			"ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
			"ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
			"ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
			"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
			"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
			"elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
			"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
			"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
			"elasticloadbalancing:DescribeTrustStores", "elasticloadbalancing:DescribeListenerAttributes",
			"elasticloadbalancing:DescribeCapacityReservation",
		}, "*"),
		Allow([]string{
			"cognito-idp:DescribeUserPoolClient", "acm:ListCertificates", "acm:DescribeCertificate",
			"iam:ListServerCertificates", "iam:GetServerCertificate",
			"waf-regional:GetWebACL", "waf-regional:GetWebACLForResource", "waf-regional:AssociateWebACL", "waf-regional:DisassociateWebACL",
			"wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
			"shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection", "shield:DeleteProtection",
		}, "*"),
		Allow([]string{"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"}, "*"),
		Allow([]string{"ec2:CreateSecurityGroup"}, "*"),
		// Tags only on the security groups it creates, as it creates them...
		Statement{
			Effect: "Allow", Action: []string{"ec2:CreateTags"}, Resource: []string{securityGroups},
			Condition: Conditions{
				"StringEquals": {"ec2:CreateAction": {"CreateSecurityGroup"}},
				"Null":         {requestTag: {"false"}},
			},
		},
		// ...or on those that carry the cluster tag already.
		Statement{Effect: "Allow", Action: []string{"ec2:CreateTags", "ec2:DeleteTags"}, Resource: []string{securityGroups}, Condition: retagging},
		Statement{
			Effect: "Allow", Action: []string{"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"},
			Resource: []string{"*"}, Condition: taggedResource,
		},
		Statement{
			Effect: "Allow", Action: []string{"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"},
			Resource: []string{"*"}, Condition: taggedRequest,
		},
		Allow([]string{
			"elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
			"elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule",
		}, "*"),
		Statement{
			Effect: "Allow", Action: []string{"elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"},
			Resource: balancersAndTargets, Condition: retagging,
		},
		Allow([]string{"elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"}, listenersAndRules...),
		Statement{
			Effect: "Allow",
			Action: []string{
				"elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
				"elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
				"elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
				"elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
				"elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:ModifyCapacityReservation",
				"elasticloadbalancing:ModifyIpPools",
			},
			Resource: []string{"*"}, Condition: taggedResource,
		},
		Statement{
			Effect: "Allow", Action: []string{"elasticloadbalancing:AddTags"}, Resource: balancersAndTargets,
			Condition: Conditions{
				"StringEquals": {"elasticloadbalancing:CreateAction": {"CreateTargetGroup", "CreateLoadBalancer"}},
				"Null":         {requestTag: {"false"}},
			},
		},
		Allow([]string{"elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}, "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*"),
		Allow([]string{
			"elasticloadbalancing:SetWebAcl", "elasticloadbalancing:ModifyListener",
			"elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
			"elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities",
		}, "*"),
	)
}
