// Package managed is the prod stack's data layer on AWS's managed services:
// an ElastiCache Redis replication group (one shard, or cluster mode
// enabled) and an RDS PostgreSQL instance, either or both, in
// the private subnets, reachable only from the cluster's security group, with
// their credentials in Secrets Manager. It hands the chat server the Redis
// URL, with TLS, and infra/dbaccess the database (IAM authentication on).
package managed

import (
	"fmt"
	"net/url"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elasticache"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/rds"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/secretsmanager"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/awsname"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
)

// Ports the security groups open, and nothing else.
const (
	RedisPort    = 6379
	PostgresPort = 5432
)

// Database of the chat server, and the RDS master user's name.
const Database = "switchboard"

// PostgresMajor is the PostgreSQL major RDS runs: the one the bootstrap SQL
// (infra/dbaccess) and the store are tested on here, and the dev stack's
// in-cluster Postgres (infra/data) runs. RDS keeps PostgreSQL 15 in
// standard support until 2028-02-29 (Amazon RDS for PostgreSQL release
// notes, "Release calendars for Amazon RDS for PostgreSQL": major versions;
// 16's ends 2029-02-28): moving to 16 or later is moving the tests' server
// with it. RDS upgrades a major, never downgrades one: a stack whose
// instance already runs 16 must not take 15.
const PostgresMajor = "15"

// Args configure the stores.
type Args struct {
	VpcID          pulumi.StringInput
	PrivateSubnets pulumi.StringArrayInput
	// ClientGroup is the only security group the stores admit: the cluster's.
	ClientGroup pulumi.StringInput
	// Redis and Postgres say which stores to create: the Redis and DB
	// settings below are read only for the store asked for.
	Redis, Postgres bool
	RedisNodeType   string
	// RedisReplicas are the replicas of the one shard; with RedisCluster
	// set it is unused (0), and the replication group is in cluster mode,
	// of that shape.
	RedisReplicas      int
	RedisCluster       *rediscluster.Shape
	DBInstanceClass    string
	DBStorageGB        int
	DBMultiAZ          bool
	DBBackupDays       int
	DeletionProtection bool
	Tags               pulumi.StringMap

	// AWS names (infra/awsname): the replication group id, the DB instance
	// and final snapshot identifiers.
	ReplicationGroupID, DBInstanceID, DBFinalSnapshotID string
}

// Managed is the component. The Redis URL is a secret; the database's
// credentials are not handed out (infra/dbaccess connects by IAM). The
// outputs of a store not asked for are empty.
type Managed struct {
	pulumi.ResourceState
	RedisURL        pulumi.StringOutput
	DBAddress       pulumi.StringOutput
	DBInstanceARN   pulumi.StringOutput // for the rds-db:connect resource
	DBResourceID    pulumi.StringOutput
	MasterSecretARN pulumi.StringOutput // RDS's managed master secret
	RedisNodes      []CacheNode         // every node of the replication group, for alarms
	DBInstance      pulumi.StringOutput // identifier, for alarms
	RedisAuthSecret pulumi.StringOutput // Secrets Manager ARN of the auth token
}

// CacheNode is one Redis node of the replication group: ID is its cache
// cluster id (CloudWatch's CacheClusterId), Label names it among the
// group's nodes.
type CacheNode struct {
	Label string
	ID    pulumi.StringOutput
}

// Cluster mode's limits (Amazon ElastiCache, "Working with shards in
// ElastiCache", https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Shards.html):
// up to 500 nodes in a cluster (shards × (1 + replicas), Redis OSS 5.0.6
// and later), 90 without a quota increase, and up to 5 replicas per shard.
// Each shard keeps at least one replica: Multi-AZ fails a primary over to a
// replica of its shard
// (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/AutoFailover.html),
// and the chat server's acks wait for one (REDIS_MIN_REPLICAS).
const (
	MaxClusterNodes     = 500
	DefaultClusterNodes = 90
	MinReplicasPerShard = 1
	MaxReplicasPerShard = rediscluster.MaxReplicasPerShard
)

// New declares the stores asked for.
func New(ctx *pulumi.Context, name string, args Args, opts ...pulumi.ResourceOption) (*Managed, error) {
	if !args.Redis && !args.Postgres {
		return nil, fmt.Errorf("managed %s: no store asked for: want Redis, Postgres or both", name)
	}
	if c := args.RedisCluster; args.Redis && c != nil {
		if c.Shards < 1 || c.ReplicasPerShard < MinReplicasPerShard || c.ReplicasPerShard > MaxReplicasPerShard || c.Nodes() > MaxClusterNodes || args.RedisReplicas != 0 {
			return nil, fmt.Errorf("managed %s: a cluster of %d shards with %d replicas each (RedisReplicas %d): want at least 1 shard, %d to %d replicas per shard, at most %d nodes in all, and RedisReplicas 0",
				name, c.Shards, c.ReplicasPerShard, args.RedisReplicas, MinReplicasPerShard, MaxReplicasPerShard, MaxClusterNodes)
		}
	}
	// A store not asked for leaves its outputs empty, not unresolvable.
	none := pulumi.String("").ToStringOutput()
	m := &Managed{RedisURL: none, RedisAuthSecret: none, DBAddress: none, DBInstanceARN: none, DBResourceID: none, MasterSecretARN: none, DBInstance: none}
	if err := ctx.RegisterComponentResource("switchboard:index:Managed", name, m, opts...); err != nil {
		return nil, err
	}
	parent := pulumi.Parent(m)
	if args.Redis {
		if err := m.redis(ctx, name, args, parent); err != nil {
			return nil, err
		}
	}
	if args.Postgres {
		if err := m.postgres(ctx, name, args, parent); err != nil {
			return nil, err
		}
	}
	return m, ctx.RegisterResourceOutputs(m, pulumi.Map{"redisUrl": m.RedisURL, "dbAddress": m.DBAddress})
}

// redis declares the replication group, its security group and auth token.
func (m *Managed) redis(ctx *pulumi.Context, name string, args Args, parent pulumi.ResourceOrInvokeOption) error {
	redisSG, err := onlyFrom(ctx, name+"-redis", args, RedisPort, parent)
	if err != nil {
		return err
	}
	// The auth token is generated once and kept in Secrets Manager: later
	// runs read it back rather than generate another.
	token, err := secretsmanager.GetRandomPassword(ctx, &secretsmanager.GetRandomPasswordArgs{
		PasswordLength: pulumi.IntRef(64), ExcludePunctuation: pulumi.BoolRef(true),
	}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: redis auth token: %w", name, err)
	}
	tokenSecret, err := secretsmanager.NewSecret(ctx, name+"-redis-auth", &secretsmanager.SecretArgs{
		Description: pulumi.String("AUTH token of the Switchboard ElastiCache replication group"), Tags: args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: redis auth secret: %w", name, err)
	}
	tokenVersion, err := secretsmanager.NewSecretVersion(ctx, name+"-redis-auth", &secretsmanager.SecretVersionArgs{
		SecretId:     tokenSecret.ID(),
		SecretString: pulumi.ToSecret(pulumi.String(token.RandomPassword)).(pulumi.StringOutput),
	}, parent, pulumi.IgnoreChanges([]string{"secretString"}))
	if err != nil {
		return fmt.Errorf("managed %s: redis auth secret version: %w", name, err)
	}
	storedToken := pulumi.ToSecret(tokenVersion.SecretString.Elem()).(pulumi.StringOutput)

	redisSubnets, err := elasticache.NewSubnetGroup(ctx, name, &elasticache.SubnetGroupArgs{SubnetIds: args.PrivateSubnets, Tags: args.Tags}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: cache subnet group: %w", name, err)
	}
	// A full Redis refuses writes rather than drop keys. ElastiCache's
	// default is volatile-lru, and every room key has a TTL: it would
	// evict a room's seq state key by key and lose seqs and history
	// without a word (issue 25).
	cacheParamValues := elasticache.ParameterGroupParameterArray{elasticache.ParameterGroupParameterArgs{
		Name: pulumi.String("maxmemory-policy"), Value: pulumi.String("noeviction"),
	}}
	description := "Switchboard message bus: noeviction"
	if args.RedisCluster != nil {
		// Cluster mode is a parameter group's: cluster-enabled yes.
		cacheParamValues = append(cacheParamValues, elasticache.ParameterGroupParameterArgs{Name: pulumi.String("cluster-enabled"), Value: pulumi.String("yes")})
		description = "Switchboard message bus: noeviction, cluster mode"
	}
	cacheParams, err := elasticache.NewParameterGroup(ctx, name, &elasticache.ParameterGroupArgs{
		// The family follows EngineVersion below: redis7 for Redis 7.x.
		Family:      pulumi.String("redis7"),
		Description: pulumi.String(description),
		Parameters:  cacheParamValues,
		Tags:        args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: cache parameters: %w", name, err)
	}
	group := &elasticache.ReplicationGroupArgs{
		ReplicationGroupId:       pulumi.String(args.ReplicationGroupID),
		Description:              pulumi.String("Switchboard message bus"),
		Engine:                   pulumi.String("redis"),
		EngineVersion:            pulumi.String("7.1"),
		ParameterGroupName:       cacheParams.Name,
		NodeType:                 pulumi.String(args.RedisNodeType),
		NumCacheClusters:         pulumi.Int(1 + args.RedisReplicas),
		Port:                     pulumi.Int(RedisPort),
		SubnetGroupName:          redisSubnets.Name,
		SecurityGroupIds:         pulumi.StringArray{redisSG.ID().ToStringOutput()},
		TransitEncryptionEnabled: pulumi.Bool(true),
		AtRestEncryptionEnabled:  pulumi.Bool(true),
		AuthToken:                storedToken,
		AutomaticFailoverEnabled: pulumi.Bool(true),
		MultiAzEnabled:           pulumi.Bool(true),
		SnapshotRetentionLimit:   pulumi.Int(1),
		ApplyImmediately:         pulumi.Bool(false),
		Tags:                     args.Tags,
	}
	if c := args.RedisCluster; c != nil {
		// Shards (node groups) in place of one group of cache clusters.
		group.NumCacheClusters = nil
		group.ClusterMode = pulumi.String("enabled")
		group.NumNodeGroups = pulumi.Int(c.Shards)
		group.ReplicasPerNodeGroup = pulumi.Int(c.ReplicasPerShard)
	}
	redis, err := elasticache.NewReplicationGroup(ctx, name, group, parent)
	if err != nil {
		return fmt.Errorf("managed %s: redis: %w", name, err)
	}

	m.RedisURL = pulumi.All(storedToken, redis.PrimaryEndpointAddress).ApplyT(func(v []any) string {
		u := url.URL{Scheme: "rediss", User: url.UserPassword("", v[0].(string)), Host: fmt.Sprintf("%s:%d", v[1], RedisPort), Path: "/0"}
		return u.String()
	}).(pulumi.StringOutput)
	m.RedisNodes = members(redis, 1+args.RedisReplicas)
	if c := args.RedisCluster; c != nil {
		// A cluster's clients start at its configuration endpoint, which
		// answers with the shards' nodes.
		m.RedisURL = pulumi.All(storedToken, redis.ConfigurationEndpointAddress).ApplyT(func(v []any) string {
			return rediscluster.URL(true, v[0].(string), fmt.Sprintf("%s:%d", v[1], RedisPort))
		}).(pulumi.StringOutput)
		m.RedisNodes = shardMembers(redis.ReplicationGroupId, *c)
	}
	m.RedisURL = pulumi.ToSecret(m.RedisURL).(pulumi.StringOutput)
	m.RedisAuthSecret = tokenSecret.Arn
	return nil
}

// postgres declares the RDS instance, its security group and parameters.
func (m *Managed) postgres(ctx *pulumi.Context, name string, args Args, parent pulumi.ResourceOrInvokeOption) error {
	pgSG, err := onlyFrom(ctx, name+"-postgres", args, PostgresPort, parent)
	if err != nil {
		return err
	}
	pgSubnets, err := rds.NewSubnetGroup(ctx, name, &rds.SubnetGroupArgs{SubnetIds: args.PrivateSubnets, Tags: args.Tags}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: db subnet group: %w", name, err)
	}
	params, err := rds.NewParameterGroup(ctx, name, &rds.ParameterGroupArgs{
		Family: pulumi.String("postgres" + PostgresMajor),
		// Plain-text connections are refused.
		Parameters: rds.ParameterGroupParameterArray{rds.ParameterGroupParameterArgs{Name: pulumi.String("rds.force_ssl"), Value: pulumi.String("1")}},
		Tags:       args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: db parameters: %w", name, err)
	}
	pg, err := rds.NewInstance(ctx, name, &rds.InstanceArgs{
		Identifier:               pulumi.String(args.DBInstanceID),
		Engine:                   pulumi.String("postgres"),
		EngineVersion:            pulumi.String(PostgresMajor),
		InstanceClass:            pulumi.String(args.DBInstanceClass),
		AllocatedStorage:         pulumi.Int(args.DBStorageGB),
		MaxAllocatedStorage:      pulumi.Int(4 * args.DBStorageGB),
		StorageType:              pulumi.String("gp3"),
		StorageEncrypted:         pulumi.Bool(true),
		DbName:                   pulumi.String(Database),
		Username:                 pulumi.String(Database),
		ManageMasterUserPassword: pulumi.Bool(true),
		// The chat server logs in by IAM token (infra/dbaccess).
		IamDatabaseAuthenticationEnabled: pulumi.Bool(true),
		DbSubnetGroupName:                pgSubnets.Name,
		VpcSecurityGroupIds:              pulumi.StringArray{pgSG.ID().ToStringOutput()},
		PubliclyAccessible:               pulumi.Bool(false),
		MultiAz:                          pulumi.Bool(args.DBMultiAZ),
		ParameterGroupName:               params.Name,
		BackupRetentionPeriod:            pulumi.Int(args.DBBackupDays),
		DeletionProtection:               pulumi.Bool(args.DeletionProtection),
		SkipFinalSnapshot:                pulumi.Bool(!args.DeletionProtection),
		FinalSnapshotIdentifier:          pulumi.String(args.DBFinalSnapshotID),
		PerformanceInsightsEnabled:       pulumi.Bool(true),
		AutoMinorVersionUpgrade:          pulumi.Bool(true),
		CopyTagsToSnapshot:               pulumi.Bool(true),
		Tags:                             args.Tags,
	}, parent)
	if err != nil {
		return fmt.Errorf("managed %s: postgres: %w", name, err)
	}

	// The master password stays in Secrets Manager, where RDS rotates it.
	m.MasterSecretARN = pg.MasterUserSecrets.Index(pulumi.Int(0)).SecretArn().Elem()
	m.DBInstanceARN = pg.Arn
	m.DBResourceID = pg.ResourceId
	m.DBAddress = pg.Address
	m.DBInstance = pg.Identifier
	return nil
}

// members are the cache clusters of a replication group without cluster
// mode, as it lists them.
func members(redis *elasticache.ReplicationGroup, n int) []CacheNode {
	var out []CacheNode
	for i := range n {
		out = append(out, CacheNode{Label: fmt.Sprint(i), ID: redis.MemberClusters.Index(pulumi.Int(i))})
	}
	return out
}

// shardMembers are the cache clusters of a cluster-mode replication group,
// as ElastiCache names them: <group id>-<node group>-<member>, node groups
// numbered from 0001 (API NodeGroup, NodeGroupId:
// https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_NodeGroup.html)
// and their members from 001, e.g. switchboard-prod-0002-001. Its member
// list (MemberClusters) is a set, in no order to tell the shards apart by.
func shardMembers(group pulumi.StringOutput, c rediscluster.Shape) []CacheNode {
	var out []CacheNode
	for shard := 1; shard <= c.Shards; shard++ {
		for member := 1; member <= 1+c.ReplicasPerShard; member++ {
			label := fmt.Sprintf("%04d-%03d", shard, member)
			out = append(out, CacheNode{Label: label, ID: pulumi.Sprintf("%s-%s", group, label)})
		}
	}
	return out
}

// onlyFrom is a security group that admits port from the client group alone.
func onlyFrom(ctx *pulumi.Context, name string, args Args, port int, parent pulumi.ResourceOption) (*ec2.SecurityGroup, error) {
	prefix, err := awsname.SecurityGroupPrefix.Prefix(ctx.Project(), ctx.Stack(), name)
	if err != nil {
		return nil, fmt.Errorf("managed %s: security group: %w", name, err)
	}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		NamePrefix:  pulumi.String(prefix),
		VpcId:       args.VpcID,
		Description: pulumi.Sprintf("Switchboard %s: port %d from the cluster only", name, port),
		Ingress: ec2.SecurityGroupIngressArray{ec2.SecurityGroupIngressArgs{
			Protocol: pulumi.String("tcp"), FromPort: pulumi.Int(port), ToPort: pulumi.Int(port),
			SecurityGroups: pulumi.StringArray{args.ClientGroup},
		}},
		// A store answers; it opens no connections of its own.
		Egress: ec2.SecurityGroupEgressArray{},
		Tags:   args.Tags,
	}, parent)
	if err != nil {
		return nil, fmt.Errorf("managed %s: security group: %w", name, err)
	}
	return sg, nil
}
