// Package stackconfig reads a stack's configuration (Pulumi.<stack>.yaml)
// into one typed struct with defaults, refusing each bad value with the key
// and the accepted form, and refusing secrets stored in plain text.
package stackconfig

import (
	"errors"
	"fmt"
	"strconv"
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

	JWTSecret        pulumi.StringOutput // secret
	DatabasePassword pulumi.StringOutput // secret; kind's in-cluster Postgres
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
	c.JWTSecret = r.secret("jwtSecret", true)
	c.DatabasePassword = r.secret("databasePassword", c.Target == Kind)
	if c.MaxReplicas < c.Replicas {
		r.fail("maxReplicas", strconv.Itoa(c.MaxReplicas), fmt.Sprintf("at least replicas (%d)", c.Replicas))
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
