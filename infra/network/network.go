// Package network is the prod stack's VPC: public and private subnets over
// three availability zones, NAT gateways (one per zone, or one), flow logs,
// and the tags the AWS Load Balancer Controller discovers subnets by.
package network

import (
	"fmt"
	"net/netip"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
)

// Zones is how many availability zones the VPC spans.
const Zones = 3

// Args configure the network.
type Args struct {
	CIDR        string // a /16
	NATPerAZ    bool
	ClusterName string // for the subnets' kubernetes.io/cluster tag
	Tags        pulumi.StringMap
}

// Network is the component.
type Network struct {
	pulumi.ResourceState
	VpcID          pulumi.IDOutput
	PublicSubnets  pulumi.StringArrayOutput
	PrivateSubnets pulumi.StringArrayOutput
}

// Subnets returns the public and private subnets of a /16: a /24 each for
// the load balancers and NAT gateways, a /18 each for nodes and pods (the
// VPC CNI gives every pod a VPC address).
func Subnets(cidr string) (public, private []string, err error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p.Bits() != 16 || !p.Addr().Is4() {
		return nil, nil, fmt.Errorf("vpcCidr %q: want an IPv4 /16 such as 10.0.0.0/16", cidr)
	}
	b := p.Masked().Addr().As4()
	for i := range Zones {
		public = append(public, fmt.Sprintf("%d.%d.%d.0/24", b[0], b[1], i))
		private = append(private, fmt.Sprintf("%d.%d.%d.0/18", b[0], b[1], 64*(i+1)))
	}
	return public, private, nil
}

// New declares the network.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Network, error) {
	publicCIDRs, privateCIDRs, err := Subnets(args.CIDR)
	if err != nil {
		return nil, err
	}
	n := &Network{}
	if err := ctx.RegisterComponentResource("switchboard:index:Network", name, n, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(n)
	zones, err := aws.GetAvailabilityZones(ctx, &aws.GetAvailabilityZonesArgs{State: pulumi.StringRef("available")}, parent)
	if err != nil {
		return nil, fmt.Errorf("network %s: availability zones: %w", name, err)
	}
	if len(zones.Names) < Zones {
		return nil, fmt.Errorf("network %s: the region has %d available zones, want %d", name, len(zones.Names), Zones)
	}
	tags := func(extra map[string]string) pulumi.StringMap {
		t := pulumi.StringMap{}
		for k, v := range args.Tags {
			t[k] = v
		}
		for k, v := range extra {
			t[k] = pulumi.String(v)
		}
		return t
	}
	vpc, err := ec2.NewVpc(ctx, name, &ec2.VpcArgs{
		CidrBlock: pulumi.String(args.CIDR), EnableDnsHostnames: pulumi.Bool(true), EnableDnsSupport: pulumi.Bool(true),
		Tags: tags(map[string]string{"Name": name}),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("network %s: vpc: %w", name, err)
	}
	igw, err := ec2.NewInternetGateway(ctx, name, &ec2.InternetGatewayArgs{VpcId: vpc.ID(), Tags: tags(nil)}, parent)
	if err != nil {
		return nil, fmt.Errorf("network %s: internet gateway: %w", name, err)
	}
	cluster := "kubernetes.io/cluster/" + args.ClusterName
	publicRT, err := ec2.NewRouteTable(ctx, name+"-public", &ec2.RouteTableArgs{
		VpcId:  vpc.ID(),
		Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), GatewayId: igw.ID()}},
		Tags:   tags(nil),
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("network %s: public routes: %w", name, err)
	}
	var public, private pulumi.StringArray
	var nats []*ec2.NatGateway
	for i := range Zones {
		az := zones.Names[i]
		pub, err := ec2.NewSubnet(ctx, fmt.Sprintf("%s-public-%d", name, i), &ec2.SubnetArgs{
			VpcId: vpc.ID(), CidrBlock: pulumi.String(publicCIDRs[i]), AvailabilityZone: pulumi.String(az),
			MapPublicIpOnLaunch: pulumi.Bool(false),
			// Internet-facing ALBs go in subnets tagged role/elb.
			Tags: tags(map[string]string{"Name": fmt.Sprintf("%s-public-%s", name, az), "kubernetes.io/role/elb": "1", cluster: "shared"}),
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("network %s: public subnet %s: %w", name, az, err)
		}
		if _, err := ec2.NewRouteTableAssociation(ctx, fmt.Sprintf("%s-public-%d", name, i), &ec2.RouteTableAssociationArgs{
			SubnetId: pub.ID(), RouteTableId: publicRT.ID(),
		}, parent); err != nil {
			return nil, fmt.Errorf("network %s: public route association %s: %w", name, az, err)
		}
		public = append(public, pub.ID().ToStringOutput())
		if i == 0 || args.NATPerAZ {
			eip, err := ec2.NewEip(ctx, fmt.Sprintf("%s-nat-%d", name, i), &ec2.EipArgs{Domain: pulumi.String("vpc"), Tags: tags(nil)}, parent)
			if err != nil {
				return nil, fmt.Errorf("network %s: NAT address %s: %w", name, az, err)
			}
			nat, err := ec2.NewNatGateway(ctx, fmt.Sprintf("%s-%d", name, i), &ec2.NatGatewayArgs{
				AllocationId: eip.ID(), SubnetId: pub.ID(), Tags: tags(map[string]string{"Name": fmt.Sprintf("%s-%s", name, az)}),
			}, parent, pulumi.DependsOn([]pulumi.Resource{igw}))
			if err != nil {
				return nil, fmt.Errorf("network %s: NAT gateway %s: %w", name, az, err)
			}
			nats = append(nats, nat)
		}
		nat := nats[len(nats)-1]
		priv, err := ec2.NewSubnet(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.SubnetArgs{
			VpcId: vpc.ID(), CidrBlock: pulumi.String(privateCIDRs[i]), AvailabilityZone: pulumi.String(az),
			Tags: tags(map[string]string{"Name": fmt.Sprintf("%s-private-%s", name, az), "kubernetes.io/role/internal-elb": "1", cluster: "shared"}),
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("network %s: private subnet %s: %w", name, az, err)
		}
		rt, err := ec2.NewRouteTable(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.RouteTableArgs{
			VpcId:  vpc.ID(),
			Routes: ec2.RouteTableRouteArray{ec2.RouteTableRouteArgs{CidrBlock: pulumi.String("0.0.0.0/0"), NatGatewayId: nat.ID()}},
			Tags:   tags(nil),
		}, parent)
		if err != nil {
			return nil, fmt.Errorf("network %s: private routes %s: %w", name, az, err)
		}
		if _, err := ec2.NewRouteTableAssociation(ctx, fmt.Sprintf("%s-private-%d", name, i), &ec2.RouteTableAssociationArgs{
			SubnetId: priv.ID(), RouteTableId: rt.ID(),
		}, parent); err != nil {
			return nil, fmt.Errorf("network %s: private route association %s: %w", name, az, err)
		}
		private = append(private, priv.ID().ToStringOutput())
	}
	if err := flowLogs(ctx, name, vpc, tags(nil), parent); err != nil {
		return nil, err
	}
	n.VpcID = vpc.ID()
	n.PublicSubnets = public.ToStringArrayOutput()
	n.PrivateSubnets = private.ToStringArrayOutput()
	return n, ctx.RegisterResourceOutputs(n, pulumi.Map{"vpcId": n.VpcID, "privateSubnets": n.PrivateSubnets})
}

// flowLogs sends the VPC's rejected and accepted flows to CloudWatch Logs.
func flowLogs(ctx *pulumi.Context, name string, vpc *ec2.Vpc, tags pulumi.StringMap, parent pulumi.ResourceOption) error {
	group, err := cloudwatch.NewLogGroup(ctx, name+"-flows", &cloudwatch.LogGroupArgs{RetentionInDays: pulumi.Int(30), Tags: tags}, parent)
	if err != nil {
		return fmt.Errorf("network %s: flow log group: %w", name, err)
	}
	trust, err := iampolicy.AssumedBy("vpc-flow-logs.amazonaws.com").JSON()
	if err != nil {
		return err
	}
	prefix, err := awsname.RolePrefix.Prefix(ctx.Project(), ctx.Stack(), name+"-flows")
	if err != nil {
		return fmt.Errorf("network %s: flow log role: %w", name, err)
	}
	role, err := iam.NewRole(ctx, name+"-flows", &iam.RoleArgs{NamePrefix: pulumi.String(prefix), AssumeRolePolicy: pulumi.String(trust), Tags: tags}, parent)
	if err != nil {
		return fmt.Errorf("network %s: flow log role: %w", name, err)
	}
	policy := group.Arn.ApplyT(func(arn string) (string, error) {
		return iampolicy.New(iampolicy.Allow(
			[]string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}, arn, arn+":*",
		)).JSON()
	}).(pulumi.StringOutput)
	if _, err := iam.NewRolePolicy(ctx, name+"-flows", &iam.RolePolicyArgs{Role: role.ID(), Policy: policy}, parent); err != nil {
		return fmt.Errorf("network %s: flow log policy: %w", name, err)
	}
	if _, err := ec2.NewFlowLog(ctx, name, &ec2.FlowLogArgs{
		VpcId: vpc.ID(), TrafficType: pulumi.String("ALL"), LogDestination: group.Arn, IamRoleArn: role.Arn, Tags: tags,
	}, parent); err != nil {
		return fmt.Errorf("network %s: flow log: %w", name, err)
	}
	return nil
}
