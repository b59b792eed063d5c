package blueprint

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/alarms"
	"github.com/switchboard-dev/switchboard/infra/autoscaling"
	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/cluster"
	"github.com/switchboard-dev/switchboard/infra/dbaccess"
	"github.com/switchboard-dev/switchboard/infra/edge"
	"github.com/switchboard-dev/switchboard/infra/managed"
	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
	"github.com/switchboard-dev/switchboard/infra/network"
	"github.com/switchboard-dev/switchboard/infra/observability"
	"github.com/switchboard-dev/switchboard/infra/workload"
)

// DefaultAWSName is AWS.Name's default: the chat server's stacks' names.
const DefaultAWSName = naming.Project

// linkLocal holds the instance metadata service's address, 169.254.169.254.
const linkLocal = "169.254.0.0/16"

// AWS runs the service on EKS behind an ALB, with CloudWatch alarms, and
// ElastiCache for Redis and RDS for Postgres when the service asks for
// them. It creates the VPC and the cluster unless given ExistingVPC and
// ExistingCluster.
type AWS struct {
	// Name prefixes the AWS names the stack sets (cluster, load balancer,
	// replication group, DB instance): <Name>-<stack>, cut to each name's
	// limit by infra/awsname (default DefaultAWSName).
	Name string
	// Region and Profile are the AWS provider's, for the kubeconfig's
	// `aws eks get-token`.
	Region, Profile string
	// VPCCIDR is the /16 of the VPC it creates (infra/network), one NAT
	// gateway per zone with NATPerAZ.
	VPCCIDR  string
	NATPerAZ bool
	// ExistingVPC is used instead of creating one.
	ExistingVPC *ExistingVPC
	// Cluster is the EKS cluster it creates.
	Cluster EKS
	// ExistingCluster is used instead of creating one (it needs ExistingVPC).
	ExistingCluster *ExistingCluster
	// LBControllerChart is the AWS Load Balancer Controller's chart version.
	LBControllerChart string
	// CertificateARN is the HTTPS listener's ACM certificate; WAFACLARN an
	// optional WAFv2 web ACL.
	CertificateARN, WAFACLARN string
	// Stickiness is the ALB's lb_cookie duration: a client's reconnects
	// reach the same pod for that long.
	Stickiness time.Duration
	// AlarmTopicARN is the SNS topic the CloudWatch alarms notify.
	AlarmTopicARN string
	Stores        ManagedStores
}

// ExistingVPC is a VPC to deploy into: its public subnets (tagged
// kubernetes.io/role/elb) hold the ALB, its private ones the stores. The
// CIDRs are the subnets' address ranges, for the NetworkPolicies.
type ExistingVPC struct {
	ID                                pulumi.StringInput
	CIDR                              string
	PublicSubnetIDs, PrivateSubnetIDs pulumi.StringArrayInput
	PublicCIDRs, PrivateCIDRs         []string
}

// ExistingCluster is an EKS cluster to deploy onto, with an IAM OIDC
// provider for its issuer (IRSA) and its Kubernetes provider. Its nodes
// scale as its owner set up: no Cluster Autoscaler is installed.
type ExistingCluster struct {
	Name            pulumi.StringInput
	SecurityGroup   pulumi.StringInput // the cluster security group, which the stores admit
	OIDCProviderARN pulumi.StringInput
	OIDCIssuer      pulumi.StringInput // without https://
	Provider        *kubernetes.Provider
}

// EKS is the cluster the AWS target creates (infra/cluster).
type EKS struct {
	Version          string
	NodeInstanceType string
	NodeMin, NodeMax int
	Addons           map[string]string // name → pinned version
	// APIAllowedCIDRs may reach the public API endpoint.
	APIAllowedCIDRs []string
}

// ManagedStores size ElastiCache and RDS (infra/managed).
type ManagedStores struct {
	RedisNodeType string
	// RedisReplicas are the primary's, without Redis.Cluster; with it, 0:
	// Redis.Cluster sizes each shard.
	RedisReplicas      int
	DBInstanceClass    string
	DBStorageGB        int
	DBMultiAZ          bool
	DBBackupDays       int
	DeletionProtection bool
}

// vpc is the network the service runs in, created or given.
type vpc struct {
	id              pulumi.StringOutput
	public, private pulumi.StringArrayOutput
}

// addresses are the VPC's, for the NetworkPolicies: the ALB's subnets
// (public) and the stores' (private).
type addresses struct {
	vpc             string
	public, private []string
}

func (t AWS) addresses() (addresses, error) {
	if e := t.ExistingVPC; e != nil {
		if e.CIDR == "" || len(e.PublicCIDRs) == 0 || len(e.PrivateCIDRs) == 0 {
			return addresses{}, errors.New("aws: an existing VPC needs its CIDR and its subnets' CIDRs")
		}
		return addresses{e.CIDR, e.PublicCIDRs, e.PrivateCIDRs}, nil
	}
	// The internet-facing ALB lives in the public subnets (the controller
	// discovers them by their kubernetes.io/role/elb tag, infra/network)
	// and reaches the pods, in the private ones, from there; ElastiCache
	// and RDS are in the private subnets (infra/managed).
	public, private, err := network.Subnets(t.VPCCIDR)
	return addresses{t.VPCCIDR, public, private}, err
}

func (t AWS) deploy(ctx *pulumi.Context, s *Service, a ServiceArgs) error {
	if t.ExistingCluster != nil && t.ExistingVPC == nil {
		return errors.New("aws: an existing cluster needs its ExistingVPC")
	}
	policies, err := t.policies(a, nil)
	if err != nil {
		return err
	}
	prefix := cmp.Or(t.Name, DefaultAWSName)
	names, err := awsname.For(prefix, ctx.Stack())
	if err != nil {
		return fmt.Errorf("aws: Name %q: %w", prefix, err)
	}
	tags := pulumi.StringMap{"project": pulumi.String(prefix), "stack": pulumi.String(ctx.Stack())}
	parent := under(s)

	net, err := t.vpc(ctx, names, tags, parent)
	if err != nil {
		return err
	}
	eks, err := t.cluster(ctx, names, net, tags, parent)
	if err != nil {
		return err
	}
	stores, err := t.stores(ctx, a, names, net, eks, tags, parent)
	if err != nil {
		return err
	}

	k8s := pulumi.Provider(eks.Provider)
	ns, err := corev1.NewNamespace(ctx, a.Namespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(a.Namespace), Labels: pulumi.StringMap{
			"app.kubernetes.io/part-of": pulumi.String(naming.Project),
			// Pods get a readiness gate: a rollout waits until the ALB has registered each new pod.
			"elbv2.k8s.aws/pod-readiness-gate-inject": pulumi.String("enabled"),
		}},
	}, k8s, parent)
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	namespace := ns.Metadata.Name().Elem()

	controller, err := edge.NewController(ctx, "edge", edge.ControllerArgs{
		Cluster: eks, VpcID: net.id, Region: t.Region, ChartVersion: t.LBControllerChart, Tags: tags,
	}, parent)
	if err != nil {
		return err
	}
	// The controller's webhooks mutate every Service, and the pods of the
	// namespace (readiness gates), and refuse them while it is not ready:
	// all that the service creates in the cluster waits for its release,
	// and on destroy is deleted before it, the ALB with its permissions
	// intact.
	afterController := []pulumi.ResourceOption{k8s, parent, pulumi.DependsOn([]pulumi.Resource{ns, controller.Release})}

	policies.Namespace = namespace
	// The ALB appends the client's address to X-Forwarded-For and connects
	// from its subnets.
	wa := workloadArgs(a, namespace, policies.LoadBalancer[0].CIDRs)
	var databaseURL pulumi.StringInput
	if a.Postgres != nil {
		db, err := dbaccess.New(ctx, "db", dbaccess.Args{
			Cluster: eks, Account: a.App.Name, NamespaceName: a.Namespace, Namespace: namespace, Database: managed.Database,
			DBInstanceARN: stores.DBInstanceARN, DBResourceID: stores.DBResourceID, DBAddress: stores.DBAddress, DBPort: managed.PostgresPort,
			MasterSecretARN: stores.MasterSecretARN, Tags: tags,
		}, afterController...)
		if err != nil {
			return err
		}
		// The pods connect to the database by IAM, as the role the
		// bootstrap made: the URL has no password.
		wa.ServiceAccount, wa.After = db.ServiceAccount.ToStringPtrOutput(), []pulumi.Resource{db.Bootstrap, db.AppPolicy}
		databaseURL = db.DatabaseURL
	}
	withStores(&wa, a, stores.RedisURL, databaseURL)
	if _, err := netpolicy.New(ctx, "netpolicy", policies, afterController...); err != nil {
		return err
	}
	app, err := workload.New(ctx, a.App.Name, wa, afterController...)
	if err != nil {
		return err
	}
	var nodes *autoscaling.NodeArgs
	if t.ExistingCluster == nil {
		nodes = &autoscaling.NodeArgs{Cluster: eks, EKSVersion: t.Cluster.Version, Region: t.Region, Tags: tags}
	}
	if _, err := autoscaling.New(ctx, "autoscaling", autoscalingArgs(a.Metrics, a.App.Scaling, false, nodes), afterController...); err != nil {
		return err
	}
	alb, err := edge.NewALB(ctx, "edge", edge.ALBArgs{
		Namespace: namespace, App: a.App.Name, Service: app.Service, ServicePort: a.App.Port,
		CertificateARN: t.CertificateARN, WAFACLARN: t.WAFACLARN,
		Stickiness: t.Stickiness, PingInterval: a.App.PingInterval, DrainWindow: a.App.Drain.Window(),
		LoadBalancer: names.LoadBalancer, ClusterName: eks.Name,
	}, afterController...)
	if err != nil {
		return err
	}
	if _, err := observability.New(ctx, "observability", observabilityArgs(a, namespace, "ClusterIP"), afterController...); err != nil {
		return err
	}
	watch := alarms.Args{Topic: t.AlarmTopicARN, LoadBalancer: names.LoadBalancer, TargetGroupTags: alb.TargetGroupTags, RedisNodes: stores.RedisNodes, Tags: tags}
	if a.Postgres != nil {
		watch.DBInstance = stores.DBInstance
	}
	if _, err := alarms.New(ctx, "alarms", watch, parent); err != nil {
		return err
	}
	s.Endpoint = pulumi.Sprintf("https://%s", alb.Hostname)
	s.LoadBalancer = alb.Hostname
	s.ClusterName = eks.Name
	if t.ExistingCluster == nil {
		s.Kubeconfig = eks.Kubeconfig
	}
	s.DashboardsURL = pulumi.String("http://localhost:3000 after `kubectl -n " + observability.Namespace + " port-forward svc/kube-prometheus-stack-grafana 3000:80`").ToStringOutput()
	return nil
}

// stores creates ElastiCache and RDS, those the service asks for; with
// neither, nothing: the Managed returned has no stores, and deploy reads
// only the outputs of the stores asked for.
func (t AWS) stores(ctx *pulumi.Context, a ServiceArgs, names awsname.Names, net vpc, eks *cluster.Cluster, tags pulumi.StringMap, parent pulumi.ResourceOption) (*managed.Managed, error) {
	if a.Redis == nil && a.Postgres == nil {
		return &managed.Managed{}, nil
	}
	st := t.Stores
	args := managed.Args{
		VpcID: net.id, PrivateSubnets: net.private, ClientGroup: eks.SecurityGroup,
		Redis: a.Redis != nil, Postgres: a.Postgres != nil,
		RedisNodeType: st.RedisNodeType, RedisReplicas: st.RedisReplicas,
		DBInstanceClass: st.DBInstanceClass, DBStorageGB: st.DBStorageGB, DBMultiAZ: st.DBMultiAZ, DBBackupDays: st.DBBackupDays,
		DeletionProtection: st.DeletionProtection, Tags: tags,
		ReplicationGroupID: names.ReplicationGroup, DBInstanceID: names.DBInstance, DBFinalSnapshotID: names.DBFinalSnapshot,
	}
	if a.Redis != nil {
		args.RedisCluster = a.Redis.Cluster
	}
	return managed.New(ctx, "data", args, parent)
}

// vpc creates the network (infra/network) or takes the one given.
func (t AWS) vpc(ctx *pulumi.Context, names awsname.Names, tags pulumi.StringMap, parent pulumi.ResourceOption) (vpc, error) {
	if e := t.ExistingVPC; e != nil {
		return vpc{id: e.ID.ToStringOutput(), public: e.PublicSubnetIDs.ToStringArrayOutput(), private: e.PrivateSubnetIDs.ToStringArrayOutput()}, nil
	}
	net, err := network.New(ctx, "network", network.Args{CIDR: t.VPCCIDR, NATPerAZ: t.NATPerAZ, ClusterName: names.Cluster, Tags: tags}, parent)
	if err != nil {
		return vpc{}, err
	}
	return vpc{id: net.VpcID.ToStringOutput(), public: net.PublicSubnets, private: net.PrivateSubnets}, nil
}

// cluster creates the EKS cluster (infra/cluster) or takes the one given.
func (t AWS) cluster(ctx *pulumi.Context, names awsname.Names, net vpc, tags pulumi.StringMap, parent pulumi.ResourceOption) (*cluster.Cluster, error) {
	if e := t.ExistingCluster; e != nil {
		return &cluster.Cluster{
			Name: e.Name.ToStringOutput(), SecurityGroup: e.SecurityGroup.ToStringOutput(),
			OIDCProviderARN: e.OIDCProviderARN.ToStringOutput(), OIDCIssuer: e.OIDCIssuer.ToStringOutput(), Provider: e.Provider,
		}, nil
	}
	c := t.Cluster
	return cluster.New(ctx, "cluster", cluster.Args{
		Name: names.Cluster, Version: c.Version, PublicSubnets: net.public, PrivateSubnets: net.private,
		NodeInstanceType: c.NodeInstanceType, NodeMin: c.NodeMin, NodeMax: c.NodeMax, Addons: c.Addons, Tags: tags,
		APIAllowedCIDRs: c.APIAllowedCIDRs, Region: t.Region, Profile: t.Profile,
	}, parent)
}

// policies are the NetworkPolicy peers on AWS: the ALB and the stores are
// addresses in the VPC, the AWS APIs outside it.
func (t AWS) policies(a ServiceArgs, namespace pulumi.StringInput) (netpolicy.Args, error) {
	net, err := t.addresses()
	if err != nil {
		return netpolicy.Args{}, err
	}
	p := netpolicy.Args{
		Namespace: namespace, App: a.App.Name, AppPort: a.App.Port,
		LoadBalancer: []netpolicy.Peer{{CIDRs: net.public}},
		Prometheus:   prometheusPeer(a.Observability),
	}
	if a.Redis != nil {
		p.Redis = &netpolicy.Store{At: netpolicy.Peer{CIDRs: net.private}, Port: managed.RedisPort}
	}
	if a.Postgres != nil {
		// The pods' IRSA credentials (STS) sign the RDS IAM tokens; the
		// bootstrap Job also reads the master secret (Secrets Manager).
		// Both answer on public addresses, through the NAT gateways:
		// HTTPS anywhere but the VPC and the link-local range, where the
		// instance metadata answers.
		p.Postgres = &netpolicy.Store{At: netpolicy.Peer{CIDRs: net.private}, Port: managed.PostgresPort}
		p.Bootstrap = dbaccess.BootstrapComponent
		p.CloudAPIs = []netpolicy.Peer{{CIDRs: []string{"0.0.0.0/0"}, Except: []string{net.vpc, linkLocal}}}
	}
	return p, nil
}
