// Package stackconfig reads a stack's configuration (Pulumi.<stack>.yaml)
// into one typed struct with defaults, refusing each bad value with the key
// and the accepted form, and refusing secrets stored in plain text.
package stackconfig

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
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

// Config is a stack's settings. Keys are in the project's namespace
// (switchboard:replicas); the zero value of Defaults is never used.
type Config struct {
	Target      string // kind or aws
	Namespace   string
	KubeContext string // kubeconfig context for kind

	Image          string
	Replicas       int // minimum, and the HPA's minReplicas
	MaxReplicas    int
	CPURequest     string
	MemoryRequest  string
	CPULimit       string
	MemoryLimit    string
	AllowedOrigins string
	PingInterval   time.Duration

	// The drain: preStop sleep, then SIGTERM, DRAIN_DELAY and DRAIN_TIMEOUT.
	PreStop      time.Duration
	DrainDelay   time.Duration
	DrainTimeout time.Duration

	EdgeImage    string // NGINX 1.27.3 or newer (resolve in upstreams)
	EdgeNodePort int    // the kind node port mapped to the host
	EdgeReplicas int

	Observability      string // install or existing
	PrometheusStackVer string // kube-prometheus-stack chart version

	// Autoscaling (capacity.go): the HPA's target of open connections per
	// pod, the Prometheus that prometheus-adapter queries for it, and
	// whether to install metrics-server.
	ConnectionsPerPod int
	PrometheusURL     string
	MetricsServer     bool

	JWTSecret        pulumi.StringOutput // secret
	DatabasePassword pulumi.StringOutput // secret; kind's in-cluster Postgres

	AWS AWSSettings // target aws only
}

// AWSSettings are the prod and staging stacks' settings.
type AWSSettings struct {
	Region            string // aws:region
	VPCCIDR           string
	NATPerAZ          bool // one NAT gateway per AZ (prod) or one for all (staging)
	EKSVersion        string
	NodeInstanceType  string
	NodeMin, NodeMax  int
	Addons            map[string]string // EKS add-on → pinned version
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
		Observability:      Install,
		PrometheusStackVer: "79.5.0",
		ConnectionsPerPod:  5000,
		PrometheusURL:      "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
		MetricsServer:      true,
		AWS: AWSSettings{
			VPCCIDR:          "10.0.0.0/16",
			NATPerAZ:         true,
			EKSVersion:       "1.33",
			NodeInstanceType: "m6i.large",
			NodeMin:          3,
			NodeMax:          6,
			Addons: map[string]string{
				"vpc-cni":            "v1.19.5-eksbuild.3",
				"coredns":            "v1.12.1-eksbuild.2",
				"kube-proxy":         "v1.33.0-eksbuild.2",
				"aws-ebs-csi-driver": "v1.45.0-eksbuild.2",
			},
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
	}
}

// Load reads the stack's configuration.
func Load(ctx *pulumi.Context) (Config, error) {
	c := Defaults()
	r := reader{ctx: ctx, cfg: config.New(ctx, "")}
	r.oneOf("target", &c.Target, true, Kind, AWS)
	r.str("namespace", &c.Namespace)
	r.str("kubeContext", &c.KubeContext)
	r.str("image", &c.Image)
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
	r.str("edgeImage", &c.EdgeImage)
	r.integer("edgeNodePort", &c.EdgeNodePort, 30000, 32767)
	r.integer("edgeReplicas", &c.EdgeReplicas, 1, 20)
	r.oneOf("observability", &c.Observability, false, Install, Existing)
	r.str("prometheusStackVersion", &c.PrometheusStackVer)
	r.autoscaling(&c)
	c.JWTSecret = r.secret("jwtSecret", true)
	c.DatabasePassword = r.secret("databasePassword", c.Target == Kind)
	if c.Target == AWS {
		r.aws(&c.AWS)
	}
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
	r.region(a)
	r.str("vpcCidr", &a.VPCCIDR)
	r.boolean("natPerAz", &a.NATPerAZ)
	r.str("eksVersion", &a.EKSVersion)
	r.str("nodeInstanceType", &a.NodeInstanceType)
	r.integer("nodeMin", &a.NodeMin, 1, 100)
	r.integer("nodeMax", &a.NodeMax, 1, 1000)
	r.str("lbControllerChartVersion", &a.LBControllerChart)
	r.required("certificateArn", &a.CertificateARN, "arn:aws:acm:")
	r.str("wafAclArn", &a.WAFACLARN)
	r.duration("stickiness", &a.Stickiness)
	r.required("alarmTopicArn", &a.AlarmTopicARN, "arn:aws:sns:")
	r.str("redisNodeType", &a.RedisNodeType)
	r.integer("redisReplicas", &a.RedisReplicas, 1, 5)
	r.str("dbInstanceClass", &a.DBInstanceClass)
	r.integer("dbStorageGb", &a.DBStorageGB, 20, 65536)
	r.boolean("dbMultiAz", &a.DBMultiAZ)
	r.integer("dbBackupDays", &a.DBBackupDays, 1, 35)
	r.boolean("deletionProtection", &a.DeletionProtect)
	for name := range a.Addons {
		v := a.Addons[name]
		r.str("addon-"+name, &v)
		a.Addons[name] = v
	}
	// The lb_cookie duration is 1 s to 7 days.
	if a.Stickiness < time.Second || a.Stickiness > 7*24*time.Hour {
		r.fail("stickiness", a.Stickiness.String(), "a duration from 1s to 168h")
	}
	if a.NodeMax < a.NodeMin {
		r.fail("nodeMax", strconv.Itoa(a.NodeMax), fmt.Sprintf("at least nodeMin (%d)", a.NodeMin))
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

// required reads a key that must be set and start with prefix.
func (r *reader) required(key string, into *string, prefix string) {
	v := r.cfg.Get(key)
	if !strings.HasPrefix(v, prefix) {
		r.fail(key, v, "an ARN starting with "+prefix)
		return
	}
	*into = v
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
