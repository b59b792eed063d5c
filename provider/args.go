package provider

import (
	"errors"
	"fmt"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
)

// ServiceArgs are blueprint.ServiceArgs as every Pulumi language can pass
// them: plain values where the blueprint takes plain ones, durations as Go
// duration strings ("5m", "30s"), the target as one of two objects, kind or
// aws, instead of an interface.
type ServiceArgs struct {
	Namespace     string         `pulumi:"namespace"`
	App           App            `pulumi:"app"`
	Redis         *Store         `pulumi:"redis,optional"`
	Postgres      *Store         `pulumi:"postgres,optional"`
	Observability *Observability `pulumi:"observability,optional"`
	Metrics       *Metrics       `pulumi:"metrics,optional"`
	Kind          *Kind          `pulumi:"kind,optional"`
	AWS           *AWS           `pulumi:"aws,optional"`
}

// App is blueprint.App.
type App struct {
	Name             string            `pulumi:"name"`
	Image            string            `pulumi:"image"`
	Port             int               `pulumi:"port,optional"`
	HealthPath       string            `pulumi:"healthPath,optional"`
	ReadyPath        string            `pulumi:"readyPath,optional"`
	Env              map[string]string `pulumi:"env,optional"`
	SecretEnv        map[string]string `pulumi:"secretEnv,optional" provider:"secret"`
	Resources        *Resources        `pulumi:"resources,optional"`
	MinReplicas      int               `pulumi:"minReplicas"`
	MaxReplicas      int               `pulumi:"maxReplicas"`
	Scaling          Scaling           `pulumi:"scaling"`
	Drain            *Drain            `pulumi:"drain,optional"`
	PingInterval     string            `pulumi:"pingInterval,optional"`
	AllowedOrigins   string            `pulumi:"allowedOrigins,optional"`
	ImagePullSecrets []string          `pulumi:"imagePullSecrets,optional"`
}

// Resources are the pods' requests and limits, in Kubernetes quantities.
type Resources struct {
	CPURequest    string `pulumi:"cpuRequest,optional"`
	MemoryRequest string `pulumi:"memoryRequest,optional"`
	CPULimit      string `pulumi:"cpuLimit,optional"`
	MemoryLimit   string `pulumi:"memoryLimit,optional"`
}

// Scaling is the HPA's signal.
type Scaling struct {
	Metric          string `pulumi:"metric,optional"`
	PerPod          int    `pulumi:"perPod"`
	CPUPercent      int    `pulumi:"cpuPercent,optional"`
	ScaleDownWindow string `pulumi:"scaleDownWindow,optional"`
}

// Drain is the pods' termination.
type Drain struct {
	PreStop string `pulumi:"preStop,optional"`
	Delay   string `pulumi:"delay,optional"`
	Timeout string `pulumi:"timeout,optional"`
}

// Store asks for Redis or Postgres; its URL reaches the server in URLEnv.
type Store struct {
	URLEnv string `pulumi:"urlEnv"`
}

// Observability is blueprint.Observability but for the alert rules and the
// Alertmanager receivers, which are Go-only (docs/component.md).
type Observability struct {
	Install             bool   `pulumi:"install,optional"`
	ChartVersion        string `pulumi:"chartVersion,optional"`
	PrometheusNamespace string `pulumi:"prometheusNamespace,optional"`
	DatasourceUID       string `pulumi:"datasourceUid,optional"`
	JobLabel            string `pulumi:"jobLabel,optional"`
	Name                string `pulumi:"name,optional"`
	Dashboard           string `pulumi:"dashboard,optional"`
}

// Metrics is blueprint.Metrics.
type Metrics struct {
	MetricsServer     bool   `pulumi:"metricsServer,optional"`
	PrometheusAdapter bool   `pulumi:"prometheusAdapter,optional"`
	AdapterImage      string `pulumi:"adapterImage,optional"`
	PrometheusURL     string `pulumi:"prometheusUrl,optional"`
}

// Kind is blueprint.Kind on a cluster named by its kubeconfig context.
type Kind struct {
	KubeContext      string             `pulumi:"kubeContext"`
	PodSubnet        string             `pulumi:"podSubnet,optional"`
	Edge             Nginx              `pulumi:"edge"`
	Endpoint         string             `pulumi:"endpoint,optional"`
	DashboardsURL    string             `pulumi:"dashboardsUrl,optional"`
	RedisImage       string             `pulumi:"redisImage,optional"`
	PostgresImage    string             `pulumi:"postgresImage,optional"`
	PostgresPassword pulumi.StringInput `pulumi:"postgresPassword,optional" provider:"secret"`
}

// Nginx is the kind edge.
type Nginx struct {
	Image    string `pulumi:"image"`
	Replicas int    `pulumi:"replicas"`
	NodePort int    `pulumi:"nodePort"`
}

// AWS is blueprint.AWS on a VPC it creates or is given, and an EKS
// cluster it creates.
type AWS struct {
	Region            string         `pulumi:"region"`
	Profile           string         `pulumi:"profile,optional"`
	VPCCIDR           string         `pulumi:"vpcCidr,optional"`
	NATPerAZ          bool           `pulumi:"natPerAz,optional"`
	ExistingVPC       *ExistingVPC   `pulumi:"existingVpc,optional"`
	Cluster           EKS            `pulumi:"cluster"`
	LBControllerChart string         `pulumi:"lbControllerChart"`
	CertificateARN    string         `pulumi:"certificateArn"`
	WAFACLARN         string         `pulumi:"wafAclArn,optional"`
	Stickiness        string         `pulumi:"stickiness"`
	AlarmTopicARN     string         `pulumi:"alarmTopicArn"`
	Stores            *ManagedStores `pulumi:"stores,optional"`
}

// ExistingVPC is blueprint.ExistingVPC.
type ExistingVPC struct {
	ID               pulumi.StringInput      `pulumi:"id"`
	CIDR             string                  `pulumi:"cidr"`
	PublicSubnetIDs  pulumi.StringArrayInput `pulumi:"publicSubnetIds"`
	PrivateSubnetIDs pulumi.StringArrayInput `pulumi:"privateSubnetIds"`
	PublicCIDRs      []string                `pulumi:"publicCidrs"`
	PrivateCIDRs     []string                `pulumi:"privateCidrs"`
}

// EKS is blueprint.EKS.
type EKS struct {
	Version          string            `pulumi:"version"`
	NodeInstanceType string            `pulumi:"nodeInstanceType"`
	NodeMin          int               `pulumi:"nodeMin"`
	NodeMax          int               `pulumi:"nodeMax"`
	Addons           map[string]string `pulumi:"addons,optional"`
	APIAllowedCIDRs  []string          `pulumi:"apiAllowedCidrs,optional"`
}

// ManagedStores is blueprint.ManagedStores.
type ManagedStores struct {
	RedisNodeType      string `pulumi:"redisNodeType,optional"`
	RedisReplicas      int    `pulumi:"redisReplicas,optional"`
	DBInstanceClass    string `pulumi:"dbInstanceClass,optional"`
	DBStorageGB        int    `pulumi:"dbStorageGb,optional"`
	DBMultiAZ          bool   `pulumi:"dbMultiAz,optional"`
	DBBackupDays       int    `pulumi:"dbBackupDays,optional"`
	DeletionProtection bool   `pulumi:"deletionProtection,optional"`
}

// Blueprint maps the args to blueprint.ServiceArgs, refusing what the
// schema cannot: a missing value, no target or two, a duration that does
// not parse. Each refusal names the field as a program spells it.
func (a ServiceArgs) Blueprint() (blueprint.ServiceArgs, error) {
	if err := required(field{"namespace", a.Namespace}, field{"app.name", a.App.Name}, field{"app.image", a.App.Image}); err != nil {
		return blueprint.ServiceArgs{}, err
	}
	app, err := a.App.blueprint()
	if err != nil {
		return blueprint.ServiceArgs{}, err
	}
	out := blueprint.ServiceArgs{Namespace: a.Namespace, App: app}
	if out.Redis, err = store("redis", a.Redis, func(env string) *blueprint.Redis { return &blueprint.Redis{URLEnv: env} }); err != nil {
		return blueprint.ServiceArgs{}, err
	}
	if out.Postgres, err = store("postgres", a.Postgres, func(env string) *blueprint.Postgres { return &blueprint.Postgres{URLEnv: env} }); err != nil {
		return blueprint.ServiceArgs{}, err
	}
	if o := a.Observability; o != nil {
		out.Observability = blueprint.Observability{
			Install: o.Install, ChartVersion: o.ChartVersion, PrometheusNamespace: o.PrometheusNamespace,
			DatasourceUID: o.DatasourceUID, JobLabel: o.JobLabel, Name: o.Name,
		}
		if o.Dashboard != "" {
			out.Observability.Dashboard = []byte(o.Dashboard)
		}
	}
	if m := a.Metrics; m != nil {
		out.Metrics = blueprint.Metrics{
			MetricsServer: m.MetricsServer, PrometheusAdapter: m.PrometheusAdapter,
			AdapterImage: m.AdapterImage, PrometheusURL: m.PrometheusURL,
		}
	}
	switch {
	case a.Kind != nil && a.AWS != nil:
		return blueprint.ServiceArgs{}, errors.New("kind and aws both set: want exactly one target")
	case a.Kind != nil:
		out.Target, err = a.Kind.blueprint()
	case a.AWS != nil:
		out.Target, err = a.AWS.blueprint()
	default:
		return blueprint.ServiceArgs{}, errors.New("no target: want exactly one of kind or aws")
	}
	return out, err
}

func (a App) blueprint() (blueprint.App, error) {
	secretEnv := map[string]pulumi.StringInput{}
	for k, v := range a.SecretEnv {
		secretEnv[k] = pulumi.ToSecret(pulumi.String(v)).(pulumi.StringOutput)
	}
	out := blueprint.App{
		Name: a.Name, Image: a.Image, Port: a.Port, HealthPath: a.HealthPath, ReadyPath: a.ReadyPath,
		Env: a.Env, SecretEnv: secretEnv, MinReplicas: a.MinReplicas, MaxReplicas: a.MaxReplicas,
		AllowedOrigins: a.AllowedOrigins, ImagePullSecrets: a.ImagePullSecrets,
		Scaling: blueprint.Scaling{Metric: a.Scaling.Metric, PerPod: a.Scaling.PerPod, CPUPercent: a.Scaling.CPUPercent},
	}
	if r := a.Resources; r != nil {
		out.Resources = blueprint.Resources{CPURequest: r.CPURequest, MemoryRequest: r.MemoryRequest, CPULimit: r.CPULimit, MemoryLimit: r.MemoryLimit}
	}
	durations := durations{
		"app.pingInterval":            {a.PingInterval, &out.PingInterval},
		"app.scaling.scaleDownWindow": {a.Scaling.ScaleDownWindow, &out.Scaling.ScaleDownWindow},
	}
	if d := a.Drain; d != nil {
		durations["app.drain.preStop"] = duration{d.PreStop, &out.Drain.PreStop}
		durations["app.drain.delay"] = duration{d.Delay, &out.Drain.Delay}
		durations["app.drain.timeout"] = duration{d.Timeout, &out.Drain.Timeout}
	}
	return out, durations.parse()
}

func (k Kind) blueprint() (blueprint.Kind, error) {
	if err := required(field{"kind.kubeContext", k.KubeContext}, field{"kind.edge.image", k.Edge.Image}); err != nil {
		return blueprint.Kind{}, err
	}
	return blueprint.Kind{
		KubeContext: k.KubeContext, PodSubnet: k.PodSubnet,
		Edge:     blueprint.Nginx{Image: k.Edge.Image, Replicas: k.Edge.Replicas, NodePort: k.Edge.NodePort},
		Endpoint: k.Endpoint, DashboardsURL: k.DashboardsURL,
		RedisImage: k.RedisImage, PostgresImage: k.PostgresImage, PostgresPassword: k.PostgresPassword,
	}, nil
}

func (a AWS) blueprint() (blueprint.AWS, error) {
	if err := required(field{"aws.region", a.Region}, field{"aws.certificateArn", a.CertificateARN}, field{"aws.alarmTopicArn", a.AlarmTopicARN}); err != nil {
		return blueprint.AWS{}, err
	}
	c := a.Cluster
	out := blueprint.AWS{
		Region: a.Region, Profile: a.Profile, VPCCIDR: a.VPCCIDR, NATPerAZ: a.NATPerAZ,
		Cluster: blueprint.EKS{
			Version: c.Version, NodeInstanceType: c.NodeInstanceType, NodeMin: c.NodeMin, NodeMax: c.NodeMax,
			Addons: c.Addons, APIAllowedCIDRs: c.APIAllowedCIDRs,
		},
		LBControllerChart: a.LBControllerChart, CertificateARN: a.CertificateARN, WAFACLARN: a.WAFACLARN,
		AlarmTopicARN: a.AlarmTopicARN,
	}
	if v := a.ExistingVPC; v != nil {
		out.ExistingVPC = &blueprint.ExistingVPC{
			ID: v.ID, CIDR: v.CIDR, PublicSubnetIDs: v.PublicSubnetIDs, PrivateSubnetIDs: v.PrivateSubnetIDs,
			PublicCIDRs: v.PublicCIDRs, PrivateCIDRs: v.PrivateCIDRs,
		}
	} else if a.VPCCIDR == "" {
		return blueprint.AWS{}, errors.New("aws: neither vpcCidr nor existingVpc: want the /16 of the VPC to create, or the VPC to use")
	}
	if s := a.Stores; s != nil {
		out.Stores = blueprint.ManagedStores{
			RedisNodeType: s.RedisNodeType, RedisReplicas: s.RedisReplicas, DBInstanceClass: s.DBInstanceClass,
			DBStorageGB: s.DBStorageGB, DBMultiAZ: s.DBMultiAZ, DBBackupDays: s.DBBackupDays, DeletionProtection: s.DeletionProtection,
		}
	}
	return out, durations{"aws.stickiness": {a.Stickiness, &out.Stickiness}}.parse()
}

// store maps a Redis or Postgres request.
func store[T any](field string, s *Store, make func(urlEnv string) *T) (*T, error) {
	if s == nil {
		return nil, nil
	}
	if s.URLEnv == "" {
		return nil, fmt.Errorf("%s.urlEnv: required: name the variable the store's URL goes in", field)
	}
	return make(s.URLEnv), nil
}

// field is a string input and its name in a program.
type field struct{ name, value string }

// required refuses the empty fields, each by name.
func required(fields ...field) error {
	var missing []error
	for _, f := range fields {
		if f.value == "" {
			missing = append(missing, fmt.Errorf("%s: required", f.name))
		}
	}
	return errors.Join(missing...)
}

// durations are the duration strings to parse, by field; empty is zero,
// the blueprint's default.
type durations map[string]duration

type duration struct {
	in  string
	out *time.Duration
}

func (ds durations) parse() error {
	var errs []error
	for field, d := range ds {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("%s: %q: want a Go duration such as \"30s\" or \"5m\"", field, d.in))
			continue
		}
		*d.out = v
	}
	return errors.Join(errs...)
}
