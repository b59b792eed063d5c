// Package stackconfig reads a stack's configuration (Pulumi.<stack>.yaml)
// into one typed struct with defaults, refusing each bad value with the key
// and the accepted form, and refusing secrets stored in plain text.
package stackconfig

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	appconfig "github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/infra/data"
	"github.com/switchboard-dev/switchboard/infra/eksaddon"
	"github.com/switchboard-dev/switchboard/infra/iampolicy"
	"github.com/switchboard-dev/switchboard/infra/managed"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
)

// Targets.
const (
	Kind = "kind"
	AWS  = "aws"
)

// Observability modes.
const (
	// Install kube-prometheus-stack (Prometheus, Grafana, Alertmanager).
	Install = "install"
	// Existing: the cluster runs the Prometheus Operator and a Grafana
	// sidecar already; add only the ServiceMonitor, rules and dashboards.
	Existing = "existing"
)

// Redis modes (redisMode).
const (
	// Standalone: one primary, the chat server's redis:// or rediss://
	// URL; on kind one pod, on AWS a replication group with redisReplicas
	// replicas and automatic failover (ElastiCache's cluster mode disabled).
	Standalone = "standalone"
	// Cluster: a Redis Cluster of redisShards shards with
	// redisReplicasPerShard replicas each, its redis+cluster:// URL.
	Cluster = "cluster"
)

// Config is a stack's settings. Keys are in the project's namespace
// (switchboard:replicas); the zero value of Defaults is never used.
type Config struct {
	Target      string // kind or aws
	Namespace   string
	KubeContext string // kubeconfig context for kind

	Image          string // repo:tag, repo@sha256:…, or repo:tag@sha256:…
	Replicas       int    // minimum, and the HPA's minReplicas
	MaxReplicas    int
	CPURequest     string
	MemoryRequest  string
	CPULimit       string
	MemoryLimit    string
	AllowedOrigins string
	PingInterval   time.Duration

	// ImagePullSecrets name Secrets in the namespace that let the chat pods
	// pull Image from a private registry.
	ImagePullSecrets []string

	// The drain: preStop sleep, then SIGTERM, DRAIN_DELAY and DRAIN_TIMEOUT.
	PreStop      time.Duration
	DrainDelay   time.Duration
	DrainTimeout time.Duration

	EdgeImage string // NGINX 1.27.3 or newer (resolve in upstreams)

	// RedisMode is standalone or cluster; RedisCluster is the cluster's
	// shape (redisShards, redisReplicasPerShard), nil in standalone mode.
	RedisMode    string
	RedisCluster *rediscluster.Shape

	RedisImage    string // kind: the in-cluster Redis (empty: infra/data's default)
	PostgresImage string // kind: the in-cluster PostgreSQL 15 (empty: infra/data's default)
	EdgeNodePort  int    // the kind node port mapped to the host
	EdgeReplicas  int

	Observability      string // install or existing
	PrometheusStackVer string // kube-prometheus-stack chart version
	// GrafanaDatasourceUID is the uid of the Prometheus datasource the
	// dashboard queries: the chart's in install mode, the cluster's Grafana
	// has its own in existing mode.
	GrafanaDatasourceUID string
	// PrometheusNamespace is where the Prometheus that scrapes the chat
	// pods runs, which the NetworkPolicies admit: in existing mode the
	// cluster's (default monitoring); install mode installs it in
	// monitoring and refuses another.
	PrometheusNamespace string

	// AlertReceivers are where Alertmanager sends the stack's alerts
	// (alerting.go), batched as AlertTiming says: the installed one's
	// routes, or in existing mode an AlertmanagerConfig for the cluster's.
	AlertReceivers []AlertReceiver
	AlertTiming    AlertTiming

	// Autoscaling (capacity.go): the HPA's target of open connections per
	// pod, how long it waits before scaling in, the Prometheus that
	// prometheus-adapter queries for it, and whether to install
	// metrics-server.
	ConnectionsPerPod int
	ScaleDownWindow   time.Duration // the HPA's scale-down stabilization window
	PrometheusURL     string
	MetricsServer     bool
	PrometheusAdapter bool   // run prometheus-adapter (the HPA's connections metric)
	AdapterImage      string // its image (empty: infra/autoscaling's default)

	JWTSecret        pulumi.StringOutput // secret
	DatabasePassword pulumi.StringOutput // secret; kind's in-cluster Postgres
	// DevSecret: jwtSecret is the repository's development secret
	// (app/config.DevSecret), which only a kind stack may use; its chat pods
	// then get ALLOW_DEV_SECRET=true.
	DevSecret bool

	AWS AWSSettings // target aws only
}

// AWSSettings are the prod and staging stacks' settings.
type AWSSettings struct {
	VPCCIDR           string
	NATPerAZ          bool // one NAT gateway per AZ (prod) or one for all (staging)
	EKSVersion        string
	NodeInstanceType  string
	NodeMin, NodeMax  int
	Addons            map[string]string // EKS add-on → pinned version: eksaddon's row for EKSVersion, addon-<name> overrides
	LBControllerChart string            // aws-load-balancer-controller chart version
	CertificateARN    string            // ACM, for the HTTPS listener
	WAFACLARN         string            // optional WAFv2 web ACL
	Stickiness        time.Duration     // lb_cookie duration
	AlarmTopicARN     string            // SNS topic for the CloudWatch alarms
	RedisNodeType     string
	RedisReplicas     int // replicas besides the primary
	DBInstanceClass   string
	DBStorageGB       int
	DBMultiAZ         bool
	DBBackupDays      int
	DeletionProtect   bool // RDS deletion protection
	// APIAllowedCIDRs may reach the public EKS API endpoint: where `pulumi
	// up` and kubectl run. 0.0.0.0/0 only with APIAllowAnywhere.
	APIAllowedCIDRs  []string
	APIAllowAnywhere bool
	// Region and Profile are the AWS provider's (aws:region, aws:profile),
	// for the kubeconfig's `aws eks get-token`.
	Region, Profile string
	// SupportNote is set when EKSVersion is in extended support: until
	// when, and at what cost.
	SupportNote string
}

// Defaults are the values of every unset key.
func Defaults() Config {
	return Config{
		Namespace:          "switchboard",
		KubeContext:        "kind-switchboard",
		Image:              "switchboard/chatserver:dev",
		Replicas:           3,
		MaxReplicas:        10,
		CPURequest:         "250m",
		MemoryRequest:      "256Mi",
		CPULimit:           "1",
		MemoryLimit:        "512Mi",
		AllowedOrigins:     "*",
		PingInterval:       25 * time.Second,
		PreStop:            5 * time.Second,
		DrainDelay:         5 * time.Second,
		DrainTimeout:       20 * time.Second,
		EdgeImage:          "nginxinc/nginx-unprivileged:1.28.0-alpine",
		EdgeNodePort:       30080,
		EdgeReplicas:       2,
		RedisMode:          Standalone,
		Observability:      Install,
		PrometheusStackVer: "79.5.0",
		// kube-prometheus-stack's grafana.sidecar.datasources.uid.
		GrafanaDatasourceUID: "prometheus",
		PrometheusNamespace:  "monitoring", // observability.Namespace
		ConnectionsPerPod:    5000,
		ScaleDownWindow:      5 * time.Minute,
		PrometheusURL:        "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
		MetricsServer:        true,
		PrometheusAdapter:    true,
		AWS: AWSSettings{
			VPCCIDR:          "10.0.0.0/16",
			NATPerAZ:         true,
			EKSVersion:       "1.35", // the newest in EKS standard support on 2026-12-06, until 2027-03-27 (infra/eksaddon's calendar)
			NodeInstanceType: "m6i.large",
			NodeMin:          3,
			NodeMax:          6,
			// Addons: infra/eksaddon's row for EKSVersion.
			LBControllerChart: "1.13.4",
			Stickiness:        time.Hour,
			RedisNodeType:     "cache.r7g.large",
			RedisReplicas:     2,
			DBInstanceClass:   "db.r6g.large",
			DBStorageGB:       100,
			DBMultiAZ:         true,
			DBBackupDays:      7,
			DeletionProtect:   true,
		},
		// Alertmanager's: the first notification of a group 30 s after its
		// first alert, a change in it 5 m after the last notification, again
		// every 4 h while it fires.
		AlertTiming: AlertTiming{GroupWait: 30 * time.Second, GroupInterval: 5 * time.Minute, RepeatInterval: 4 * time.Hour},
	}
}

// Load reads the stack's configuration.
func Load(ctx *pulumi.Context) (Config, error) {
	c := Defaults()
	r := reader{ctx: ctx, cfg: config.New(ctx, "")}
	r.oneOf("target", &c.Target, true, Kind, AWS)
	r.str("namespace", &c.Namespace)
	r.str("kubeContext", &c.KubeContext)
	r.image("image", &c.Image)
	r.names("imagePullSecrets", &c.ImagePullSecrets)
	r.integer("replicas", &c.Replicas, 1, 100)
	r.integer("maxReplicas", &c.MaxReplicas, 1, 1000)
	r.str("cpuRequest", &c.CPURequest)
	r.str("memoryRequest", &c.MemoryRequest)
	r.str("cpuLimit", &c.CPULimit)
	r.str("memoryLimit", &c.MemoryLimit)
	r.str("allowedOrigins", &c.AllowedOrigins)
	r.duration("pingInterval", &c.PingInterval)
	r.duration("preStop", &c.PreStop)
	r.duration("drainDelay", &c.DrainDelay)
	r.duration("drainTimeout", &c.DrainTimeout)
	r.image("edgeImage", &c.EdgeImage)
	r.image("redisImage", &c.RedisImage)
	r.image("postgresImage", &c.PostgresImage)
	r.integer("edgeNodePort", &c.EdgeNodePort, 30000, 32767)
	r.integer("edgeReplicas", &c.EdgeReplicas, 1, 20)
	r.oneOf("observability", &c.Observability, false, Install, Existing)
	r.str("prometheusStackVersion", &c.PrometheusStackVer)
	r.pattern("grafanaDatasourceUid", &c.GrafanaDatasourceUID, grafanaUID, "a Grafana datasource uid: 1 to 40 letters, digits, '-' or '_'")
	r.pattern("prometheusNamespace", &c.PrometheusNamespace, namespaceName, "a namespace name: up to 63 lower-case letters, digits or '-'")
	if c.Observability == Install && c.PrometheusNamespace != Defaults().PrometheusNamespace {
		r.fail("prometheusNamespace", c.PrometheusNamespace, fmt.Sprintf("%s (install mode installs Prometheus there), or observability: existing", Defaults().PrometheusNamespace))
	}
	r.autoscaling(&c)
	r.alerting(&c)
	c.JWTSecret = r.secret("jwtSecret", true)
	c.DevSecret = r.jwtSecret(c.Target)
	c.DatabasePassword = r.secret("databasePassword", c.Target == Kind)
	if c.Target == AWS {
		r.aws(&c.AWS)
	}
	r.redisMode(&c)
	if c.MaxReplicas < c.Replicas {
		r.fail("maxReplicas", strconv.Itoa(c.MaxReplicas), fmt.Sprintf("at least replicas (%d)", c.Replicas))
	}
	if c.Target == AWS {
		r.fitsNodes(c)
	}
	if err := errors.Join(r.errs...); err != nil {
		return Config{}, fmt.Errorf("stack config:\n%w", err)
	}
	return c, nil
}

type reader struct {
	ctx  *pulumi.Context
	cfg  *config.Config
	errs []error
}

func (r *reader) fail(key, got, want string) {
	r.errs = append(r.errs, fmt.Errorf("%s:%s = %q: want %s", r.ctx.Project(), key, got, want))
}

func (r *reader) str(key string, into *string) {
	if v := r.cfg.Get(key); v != "" {
		*into = v
	}
}

func (r *reader) oneOf(key string, into *string, required bool, values ...string) {
	v := r.cfg.Get(key)
	if v == "" && !required {
		return
	}
	for _, ok := range values {
		if v == ok {
			*into = v
			return
		}
	}
	r.fail(key, v, fmt.Sprintf("one of %v", values))
}

func (r *reader) integer(key string, into *int, lo, hi int) {
	v := r.cfg.Get(key)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(key, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return
	}
	*into = n
}

func (r *reader) duration(key string, into *time.Duration) {
	v := r.cfg.Get(key)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(key, v, "a duration like 5s or 1m30s")
		return
	}
	*into = d
}

func (r *reader) aws(a *AWSSettings) {
	r.str("vpcCidr", &a.VPCCIDR)
	r.boolean("natPerAz", &a.NATPerAZ)
	r.str("eksVersion", &a.EKSVersion)
	r.str("nodeInstanceType", &a.NodeInstanceType)
	r.integer("nodeMin", &a.NodeMin, 1, 100)
	r.integer("nodeMax", &a.NodeMax, 1, 1000)
	r.str("lbControllerChartVersion", &a.LBControllerChart)
	if _, _, err := iampolicy.LBControllerPolicy(a.LBControllerChart); err != nil {
		r.fail("lbControllerChartVersion", a.LBControllerChart, fmt.Sprintf("one of %s, the charts infra/iampolicy has the controller's IAM policy for (%v)",
			strings.Join(iampolicy.LBChartVersions(), ", "), err))
	}
	r.arn("certificateArn", &a.CertificateARN, true, "acm", "certificate/")
	r.arn("wafAclArn", &a.WAFACLARN, false, "wafv2", "")
	r.duration("stickiness", &a.Stickiness)
	r.arn("alarmTopicArn", &a.AlarmTopicARN, true, "sns", "")
	r.str("redisNodeType", &a.RedisNodeType)
	r.integer("redisReplicas", &a.RedisReplicas, 1, 5)
	r.str("dbInstanceClass", &a.DBInstanceClass)
	r.integer("dbStorageGb", &a.DBStorageGB, 20, 65536)
	r.boolean("dbMultiAz", &a.DBMultiAZ)
	r.integer("dbBackupDays", &a.DBBackupDays, 1, 35)
	r.boolean("deletionProtection", &a.DeletionProtect)
	r.addons(a)
	r.apiCIDRs(a)
	aws := config.New(r.ctx, "aws")
	a.Region, a.Profile = aws.Get("region"), aws.Get("profile")
	if a.Region == "" {
		r.errs = append(r.errs, errors.New("aws:region is not set: `pulumi config set aws:region <region>`, e.g. eu-west-1"))
	}
	// The lb_cookie duration is 1 s to 7 days.
	if a.Stickiness < time.Second || a.Stickiness > 7*24*time.Hour {
		r.fail("stickiness", a.Stickiness.String(), "a duration from 1s to 168h")
	}
	if a.NodeMax < a.NodeMin {
		r.fail("nodeMax", strconv.Itoa(a.NodeMax), fmt.Sprintf("at least nodeMin (%d)", a.NodeMin))
	}
}

// The cluster's shape when redisMode is cluster and the keys are unset:
// three primaries, the fewest redis-cli --cluster create takes, each with
// a replica to fail over to.
const (
	DefaultShards           = 3
	DefaultReplicasPerShard = 1
)

// redisMode reads redisMode and, in cluster mode, the cluster's shape,
// within the target's limits (infra/data's on kind, ElastiCache's on AWS,
// infra/managed). The shape's keys without cluster mode, and AWS's
// redisReplicas with it, would be ignored: refused.
func (r *reader) redisMode(c *Config) {
	r.oneOf("redisMode", &c.RedisMode, false, Standalone, Cluster)
	if c.RedisMode != Cluster {
		for _, key := range []string{"redisShards", "redisReplicasPerShard"} {
			if v := r.cfg.Get(key); v != "" {
				r.fail(key, v, "unset, or redisMode: cluster (it shapes a Redis Cluster)")
			}
		}
		return
	}
	shape := rediscluster.Shape{Shards: DefaultShards, ReplicasPerShard: DefaultReplicasPerShard}
	if c.Target == AWS {
		r.integer("redisShards", &shape.Shards, 1, managed.MaxClusterNodes)
		r.integer("redisReplicasPerShard", &shape.ReplicasPerShard, managed.MinReplicasPerShard, managed.MaxReplicasPerShard)
		if v := r.cfg.Get("redisReplicas"); v != "" {
			r.fail("redisReplicas", v, "unset with redisMode: cluster (redisReplicasPerShard sizes each shard)")
		}
		c.AWS.RedisReplicas = 0
		switch n := shape.Nodes(); {
		case n > managed.MaxClusterNodes:
			r.fail("redisShards", strconv.Itoa(shape.Shards), fmt.Sprintf("at most %d nodes in all, ElastiCache's limit: redisShards × (1 + redisReplicasPerShard) = %d", managed.MaxClusterNodes, n))
		case n > managed.DefaultClusterNodes:
			r.ctx.Log.Warn(fmt.Sprintf("switchboard:redisShards: %d nodes: past ElastiCache's default quota of %d nodes per cluster, ask AWS for an increase first", n, managed.DefaultClusterNodes), nil)
		}
	} else {
		r.integer("redisShards", &shape.Shards, data.MinShards, data.MaxShards)
		r.integer("redisReplicasPerShard", &shape.ReplicasPerShard, 0, data.MaxReplicasPerShard)
	}
	c.RedisCluster = &shape
}

// Today is the day the EKS support check (infra/eksaddon's calendar) is
// made on; the tests fix it.
var Today = time.Now

// addons pins the add-ons of eksVersion's row, each overridable by
// addon-<name>, and refuses an eksVersion past its end of extended support
// (with the date), without a row, or a kube-proxy of another minor. A
// minor in extended support is accepted with a warning: it costs more, and
// ends.
func (r *reader) addons(a *AWSSettings) {
	note, err := eksaddon.Supported(a.EKSVersion, Today())
	if err != nil {
		r.fail("eksVersion", a.EKSVersion, fmt.Sprintf("one of %s, the minors infra/eksaddon has add-on versions for, in EKS standard or extended support (%v)",
			strings.Join(eksaddon.Minors(), ", "), err))
		return
	}
	if note != "" {
		a.SupportNote = note
		r.ctx.Log.Warn("switchboard:eksVersion: "+note, nil)
	}
	row, err := eksaddon.For(a.EKSVersion)
	if err != nil {
		r.fail("eksVersion", a.EKSVersion, "one of "+strings.Join(eksaddon.Minors(), ", ")+", the minors infra/eksaddon has add-on versions for")
		return
	}
	for _, name := range slices.Sorted(maps.Keys(row)) {
		v := row[name]
		r.str("addon-"+name, &v)
		if err := eksaddon.Check(a.EKSVersion, name, v); err != nil {
			r.fail("addon-"+name, v, err.Error())
		}
		row[name] = v
	}
	a.Addons = row
}

// maxAPICIDRs is EKS's limit on public access CIDR blocks per cluster
// (Amazon EKS User Guide, "Cluster API server endpoint").
const maxAPICIDRs = 40

// apiCIDRs reads apiAllowedCidrs, required: IPv4 CIDRs, comma-separated.
// One that admits every address is refused unless apiAllowAnywhere is true.
func (r *reader) apiCIDRs(a *AWSSettings) {
	r.boolean("apiAllowAnywhere", &a.APIAllowAnywhere)
	v := r.cfg.Get("apiAllowedCidrs")
	want := "comma-separated IPv4 CIDRs that may reach the EKS API (your and CI's egress, e.g. 198.51.100.7/32), at most 40"
	if v == "" {
		r.fail("apiAllowedCidrs", v, want)
		return
	}
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimSpace(c)
		p, err := netip.ParsePrefix(c)
		switch {
		case err != nil || !p.Addr().Is4() || p.Masked() != p:
			r.fail("apiAllowedCidrs", v, fmt.Sprintf("%s; %q is not one (a CIDR's host bits are zero)", want, c))
			return
		case p.Bits() == 0 && !a.APIAllowAnywhere:
			r.fail("apiAllowedCidrs", v, "CIDRs narrower than 0.0.0.0/0, or apiAllowAnywhere true to open the API endpoint to the internet")
			return
		}
		a.APIAllowedCIDRs = append(a.APIAllowedCIDRs, c)
	}
	if len(a.APIAllowedCIDRs) > maxAPICIDRs {
		r.fail("apiAllowedCidrs", v, want)
	}
}

func (r *reader) boolean(key string, into *bool) {
	v := r.cfg.Get(key)
	if v == "" {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, v, "true or false")
		return
	}
	*into = b
}

// Image references as the distribution spec writes them
// (github.com/distribution/reference's grammar): an optional registry
// host[:port]/, lower-case path components, then a tag, a sha256 digest, or
// both. An untagged name would mean :latest, which moves: refused.
var imageRef = func() *regexp.Regexp {
	host := `(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?`
	path := `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	tag := `:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}`
	digest := `@sha256:[a-f0-9]{64}`
	return regexp.MustCompile(`^(?:` + host + `/)?` + path + `(?:/` + path + `)*(?:` + tag + `|` + digest + `|` + tag + digest + `)$`)
}()

const imageForm = "an image reference repo:tag, repo@sha256:<64 hex> or repo:tag@sha256:<64 hex>"

func (r *reader) image(key string, into *string) {
	r.pattern(key, into, imageRef, imageForm)
}

// grafanaUID: Grafana refuses uids longer than 40 characters or with other
// characters (pkg/util/shortid_generator.go).
var grafanaUID = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)

// pattern reads a key whose value, when set, must match re.
func (r *reader) pattern(key string, into *string, re *regexp.Regexp, form string) {
	v := r.cfg.Get(key)
	if v == "" {
		return
	}
	if !re.MatchString(v) {
		r.fail(key, v, form)
		return
	}
	*into = v
}

// namespaceName is a Kubernetes namespace name (a DNS-1123 label).
var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// objectName is a Kubernetes object name (a DNS-1123 subdomain).
var objectName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// names reads a comma-separated list of Kubernetes object names.
func (r *reader) names(key string, into *[]string) {
	v := r.cfg.Get(key)
	if v == "" {
		return
	}
	var out []string
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if len(n) > 253 || !objectName.MatchString(n) {
			r.fail(key, v, "a comma-separated list of Secret names (lower-case DNS-1123 names, such as ghcr-pull)")
			return
		}
		out = append(out, n)
	}
	*into = out
}

// An ARN is arn:<partition>:<service>:<region>:<account>:<resource>
// (AWS's "Identify AWS resources with Amazon Resource Names"). The
// account is 12 digits; every service here is regional.
var arnRe = regexp.MustCompile(`^arn:aws(?:-[a-z]+)*:([a-z0-9-]+):([a-z]{2}(?:-[a-z]+)+-[0-9]+):([0-9]{12}):(.+)$`)

// placeholders are values copied from examples: AWS's documentation
// account and words that mark a value to fill in.
var placeholders = []string{"123456789012", "replace-me", "replace_me", "replaceme", "changeme", "change-me", "example", "...", "<", ">"}

// arn reads an ARN of service whose resource starts with resource,
// refusing one copied from an example.
func (r *reader) arn(key string, into *string, required bool, service, resource string) {
	v := r.cfg.Get(key)
	if v == "" && !required {
		return
	}
	form := fmt.Sprintf("your own ARN arn:aws:%s:<region>:<12-digit account>:%s<id> (`pulumi config set %s:%s <arn>`)", service, resource, r.ctx.Project(), key)
	m := arnRe.FindStringSubmatch(v)
	if m == nil || m[1] != service || !strings.HasPrefix(m[4], resource) || len(m[4]) == len(resource) {
		r.fail(key, v, form)
		return
	}
	for _, p := range placeholders {
		if strings.Contains(strings.ToLower(v), p) {
			r.fail(key, v, fmt.Sprintf("%s, not a placeholder (it contains %q)", form, p))
			return
		}
	}
	*into = v
}

// jwtSecret checks jwtSecret as the chat server will (app/config): at
// least MinSecretBytes, and the development secret only on kind. It
// reports whether the secret is the development secret. The value never
// appears in an error.
func (r *reader) jwtSecret(target string) bool {
	v, set := r.ctx.GetConfig(r.ctx.Project() + ":jwtSecret")
	if !set {
		return false // refused as missing by secret
	}
	switch {
	case len(v) < appconfig.MinSecretBytes:
		r.fail("jwtSecret", fmt.Sprintf("<%d bytes>", len(v)), fmt.Sprintf("a random secret of at least %d bytes, e.g. `pulumi config set --secret %s:jwtSecret \"$(openssl rand -hex 32)\"`", appconfig.MinSecretBytes, r.ctx.Project()))
	case v == appconfig.DevSecret && target != Kind:
		r.fail("jwtSecret", "<the development secret>", "a random secret of your own: the repository's development secret is public, for kind stacks only")
	}
	return v == appconfig.DevSecret
}

// secret reads a secret key, refusing one stored in plain text.
func (r *reader) secret(key string, required bool) pulumi.StringOutput {
	full := r.ctx.Project() + ":" + key
	_, set := r.ctx.GetConfig(full)
	switch {
	case !set && required:
		r.errs = append(r.errs, fmt.Errorf("%s is not set: `pulumi config set --secret %s <value>`", full, full))
	case set && !r.ctx.IsConfigSecret(full):
		r.errs = append(r.errs, fmt.Errorf("%s is stored in plain text: set it again with `pulumi config set --secret %s <value>`", full, full))
	}
	return r.cfg.GetSecret(key)
}
