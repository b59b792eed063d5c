package main

import (
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
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
	"github.com/switchboard-dev/switchboard/infra/workload"
)

// linkLocal holds the instance metadata service's address, 169.254.169.254.
const linkLocal = "169.254.0.0/16"

// awsStack is the prod (and staging) stack: VPC, EKS, ElastiCache, RDS, the
// same workload and monitoring as kind, an ALB in front, CloudWatch alarms.
func awsStack(ctx *pulumi.Context, cfg stackconfig.Config) error {
	a := cfg.AWS
	names, err := awsname.For(naming.Project, ctx.Stack())
	if err != nil {
		return err
	}
	tags := pulumi.StringMap{"project": pulumi.String(naming.Project), "stack": pulumi.String(ctx.Stack())}

	net, err := network.New(ctx, "network", network.Args{CIDR: a.VPCCIDR, NATPerAZ: a.NATPerAZ, ClusterName: names.Cluster, Tags: tags})
	if err != nil {
		return err
	}
	eks, err := cluster.New(ctx, "cluster", cluster.Args{
		Name: names.Cluster, Version: a.EKSVersion, PublicSubnets: net.PublicSubnets, PrivateSubnets: net.PrivateSubnets,
		NodeInstanceType: a.NodeInstanceType, NodeMin: a.NodeMin, NodeMax: a.NodeMax, Addons: a.Addons, Tags: tags,
		APIAllowedCIDRs: a.APIAllowedCIDRs, Region: a.Region, Profile: a.Profile,
	})
	if err != nil {
		return err
	}
	stores, err := managed.New(ctx, "data", managed.Args{
		VpcID: net.VpcID.ToStringOutput(), PrivateSubnets: net.PrivateSubnets, ClientGroup: eks.SecurityGroup,
		RedisNodeType: a.RedisNodeType, RedisReplicas: a.RedisReplicas,
		DBInstanceClass: a.DBInstanceClass, DBStorageGB: a.DBStorageGB, DBMultiAZ: a.DBMultiAZ, DBBackupDays: a.DBBackupDays,
		DeletionProtection: a.DeletionProtect, Tags: tags,
		ReplicationGroupID: names.ReplicationGroup, DBInstanceID: names.DBInstance, DBFinalSnapshotID: names.DBFinalSnapshot,
	})
	if err != nil {
		return err
	}

	k8s := pulumi.Provider(eks.Provider)
	ns, err := corev1.NewNamespace(ctx, cfg.Namespace, &corev1.NamespaceArgs{
		Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String(cfg.Namespace), Labels: pulumi.StringMap{
			"app.kubernetes.io/part-of": pulumi.String(naming.Project),
			// Pods get a readiness gate: a rollout waits until the ALB has registered each new pod.
			"elbv2.k8s.aws/pod-readiness-gate-inject": pulumi.String("enabled"),
		}},
	}, k8s)
	if err != nil {
		return err
	}
	namespace := ns.Metadata.Name().Elem()

	controller, err := edge.NewController(ctx, "edge", edge.ControllerArgs{
		Cluster: eks, VpcID: net.VpcID.ToStringOutput(), Region: a.Region, ChartVersion: a.LBControllerChart, Tags: tags,
	})
	if err != nil {
		return err
	}
	// The controller's webhooks mutate every Service, and the pods of the
	// namespace (readiness gates), and refuse them while it is not ready:
	// all that the stack creates in the cluster waits for its release, and
	// on destroy is deleted before it, the ALB with its permissions intact.
	afterController := []pulumi.ResourceOption{k8s, pulumi.DependsOn([]pulumi.Resource{ns, controller.Release})}

	db, err := dbaccess.New(ctx, "db", dbaccess.Args{
		Cluster: eks, NamespaceName: cfg.Namespace, Namespace: namespace, Database: managed.Database,
		DBInstanceARN: stores.DBInstanceARN, DBResourceID: stores.DBResourceID, DBAddress: stores.DBAddress, DBPort: managed.PostgresPort,
		MasterSecretARN: stores.MasterSecretARN, Tags: tags,
	}, afterController...)
	if err != nil {
		return err
	}
	policies, err := awsPolicies(cfg, namespace)
	if err != nil {
		return err
	}
	if _, err := netpolicy.New(ctx, "netpolicy", policies, afterController...); err != nil {
		return err
	}
	wa := workloadArgs(cfg, namespace, stores.RedisURL, db.DatabaseURL)
	wa.ServiceAccount, wa.After = db.ServiceAccount.ToStringPtrOutput(), []pulumi.Resource{db.Bootstrap, db.ChatPolicy}
	// The ALB appends the client's address to X-Forwarded-For and connects
	// from its subnets.
	wa.TrustedProxies = policies.LoadBalancer[0].CIDRs
	wa.Env = map[string]string{"DATABASE_AUTH": dbaccess.Auth, "AWS_REGION": a.Region}
	// An ack waits until a replica holds the message, so a Multi-AZ
	// failover to that replica keeps every acked message (redisReplicas
	// is at least 1).
	wa.Env["REDIS_MIN_REPLICAS"] = "1"
	chat, err := workload.New(ctx, "chat", wa, afterController...)
	if err != nil {
		return err
	}
	nodes := &autoscaling.NodeArgs{Cluster: eks, EKSVersion: a.EKSVersion, Region: a.Region, Tags: tags}
	if _, err := autoscaling.New(ctx, "autoscaling", autoscalingArgs(cfg, nodes), afterController...); err != nil {
		return err
	}
	alb, err := edge.NewALB(ctx, "edge", edge.ALBArgs{
		Namespace: namespace, Service: chat.Service, ServicePort: workload.Port,
		CertificateARN: a.CertificateARN, WAFACLARN: a.WAFACLARN,
		Stickiness: a.Stickiness, PingInterval: cfg.PingInterval, DrainWindow: wa.Drain.Window(),
		LoadBalancer: names.LoadBalancer, ClusterName: eks.Name,
	}, afterController...)
	if err != nil {
		return err
	}
	if _, err := observability.New(ctx, "observability", observabilityArgs(cfg, namespace, "ClusterIP"), afterController...); err != nil {
		return err
	}
	if _, err := alarms.New(ctx, "alarms", alarms.Args{
		Topic: a.AlarmTopicARN, LoadBalancer: names.LoadBalancer, TargetGroupTags: alb.TargetGroupTags,
		RedisClusters: stores.RedisClusters, RedisMembers: 1 + a.RedisReplicas, DBInstance: stores.DBInstance, Tags: tags,
	}); err != nil {
		return err
	}
	ctx.Export("albDnsName", alb.Hostname)
	ctx.Export("chatUrl", pulumi.Sprintf("https://%s", alb.Hostname))
	ctx.Export("clusterName", eks.Name)
	ctx.Export("kubeconfig", eks.Kubeconfig)
	ctx.Export("grafanaUrl", pulumi.String("http://localhost:3000 after `kubectl -n "+observability.Namespace+" port-forward svc/kube-prometheus-stack-grafana 3000:80`"))
	return nil
}

// awsPolicies are the prod stack's NetworkPolicy peers: the ALB and the
// stores are addresses in the VPC, the AWS APIs outside it.
func awsPolicies(cfg stackconfig.Config, namespace pulumi.StringInput) (netpolicy.Args, error) {
	// The internet-facing ALB lives in the public subnets (the controller
	// discovers them by their kubernetes.io/role/elb tag, infra/network)
	// and reaches the pods, in the private ones, from there; ElastiCache
	// and RDS are in the private subnets (infra/managed).
	albSubnets, storeSubnets, err := network.Subnets(cfg.AWS.VPCCIDR)
	if err != nil {
		return netpolicy.Args{}, err
	}
	return netpolicy.Args{
		Namespace: namespace, ChatPort: workload.Port,
		LoadBalancer: []netpolicy.Peer{{CIDRs: albSubnets}},
		Prometheus:   prometheusPeer(cfg),
		Redis:        netpolicy.Store{At: netpolicy.Peer{CIDRs: storeSubnets}, Port: managed.RedisPort},
		Postgres:     netpolicy.Store{At: netpolicy.Peer{CIDRs: storeSubnets}, Port: managed.PostgresPort},
		Bootstrap:    dbaccess.BootstrapComponent,
		// STS and Secrets Manager answer on public addresses, through the
		// NAT gateways: HTTPS anywhere but the VPC and the link-local
		// range, where the instance metadata answers.
		CloudAPIs: []netpolicy.Peer{{CIDRs: []string{"0.0.0.0/0"}, Except: []string{cfg.AWS.VPCCIDR, linkLocal}}},
	}, nil
}
