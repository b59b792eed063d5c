package provider_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/blang/semver"
	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/integration"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/property"

	"github.com/switchboard-dev/switchboard/provider"
)

// declared records what the component declares under Pulumi's mocks.
type declared struct {
	mu        sync.Mutex
	resources []integration.MockResourceArgs
}

func (d *declared) monitor() *integration.MockResourceMonitor {
	return &integration.MockResourceMonitor{NewResourceF: func(args integration.MockResourceArgs) (string, property.Map, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.resources = append(d.resources, args)
		return args.Name + "-id", args.Inputs, nil
	}}
}

// named is the resource of that type and name, if declared.
func (d *declared) named(typ, name string) (integration.MockResourceArgs, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.IndexFunc(d.resources, func(r integration.MockResourceArgs) bool { return string(r.TypeToken) == typ && r.Name == name })
	if i < 0 {
		return integration.MockResourceArgs{}, false
	}
	return d.resources[i], true
}

// construct asks the provider, as the engine would, for the component
// named echo with these inputs.
func construct(t *testing.T, inputs map[string]any, edit ...func(property.Map) property.Map) (*declared, p.ConstructResponse, error) {
	t.Helper()
	prov, err := provider.New()
	if err != nil {
		t.Fatal(err)
	}
	d := &declared{}
	server, err := integration.NewServer(t.Context(), provider.Name, semver.MustParse("0.1.0"),
		integration.WithProvider(prov), integration.WithMocks(d.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	in := resource.FromResourcePropertyMap(resource.NewPropertyMapFromMap(inputs))
	for _, e := range edit {
		in = e(in)
	}
	resp, err := server.Construct(p.ConstructRequest{
		Urn:    resource.NewURN("dev", "echo-yaml", "", "switchboard:index:Service", "echo"),
		Inputs: in,
	})
	return d, resp, err
}

// echo are the inputs of examples/yaml: the echo server on kind.
func echo() map[string]any {
	return map[string]any{
		"namespace": "echo-yaml",
		"app": map[string]any{
			"name": "echo", "image": "switchboard/echo:dev",
			"resources":   map[string]any{"cpuRequest": "50m", "memoryRequest": "32Mi", "cpuLimit": "500m", "memoryLimit": "128Mi"},
			"minReplicas": 2, "maxReplicas": 5,
			"scaling":      map[string]any{"perPod": 1000, "scaleDownWindow": "5m"},
			"drain":        map[string]any{"preStop": "5s", "delay": "5s", "timeout": "10s"},
			"pingInterval": "25s",
			"env":          map[string]any{"LOG_LEVEL": "debug"},
		},
		"observability": map[string]any{"prometheusNamespace": "monitoring", "datasourceUid": "prometheus"},
		"kind": map[string]any{
			"kubeContext": "kind-switchboard",
			"edge":        map[string]any{"image": "nginxinc/nginx-unprivileged:1.28.0-alpine", "replicas": 1, "nodePort": 30082},
			"endpoint":    "http://localhost:8082",
		},
	}
}

func TestConstructDeploysTheServiceOnKind(t *testing.T) {
	d, resp, err := construct(t, echo())
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.State.Get("endpoint"); got.AsString() != "http://localhost:8082" {
		t.Errorf("endpoint %v, want the kind endpoint given, http://localhost:8082", got)
	}
	if got := resp.State.Get("dashboardsUrl"); got.AsString() != "http://localhost:3000" {
		t.Errorf("dashboardsUrl %v, want kind's default, http://localhost:3000", got)
	}
	for _, empty := range []string{"kubeconfig", "clusterName", "loadBalancer"} {
		if got := resp.State.Get(empty); !got.IsString() || got.AsString() != "" {
			t.Errorf("%s %v, want empty on kind", empty, got)
		}
	}
	ns, ok := d.named("kubernetes:core/v1:Namespace", "echo-yaml")
	if !ok {
		t.Fatal("no namespace echo-yaml")
	}
	if name := ns.Inputs.Get("metadata").AsMap().Get("name").AsString(); name != "echo-yaml" {
		t.Errorf("namespace named %q, want echo-yaml", name)
	}
	dep, ok := d.named("kubernetes:apps/v1:Deployment", "echo")
	if !ok {
		t.Fatal("no deployment echo")
	}
	container := dep.Inputs.Get("spec").AsMap().Get("template").AsMap().Get("spec").AsMap().Get("containers").AsArray().Get(0).AsMap()
	if img := container.Get("image").AsString(); img != "switchboard/echo:dev" {
		t.Errorf("image %q, want switchboard/echo:dev", img)
	}
	env := map[string]string{}
	for _, e := range container.Get("env").AsArray().All {
		if v := e.AsMap().Get("value"); v.IsString() {
			env[e.AsMap().Get("name").AsString()] = v.AsString()
		}
	}
	// The durations given as strings reach the pods as the blueprint sets them.
	for k, want := range map[string]string{"LOG_LEVEL": "debug", "DRAIN_DELAY": "5s", "DRAIN_TIMEOUT": "10s", "PING_INTERVAL": "25s"} {
		if env[k] != want {
			t.Errorf("%s=%q, want %q (env %v)", k, env[k], want, env)
		}
	}
	edge, ok := d.named("kubernetes:core/v1:Service", "edge")
	if !ok {
		t.Fatal("no edge Service")
	}
	if port := edge.Inputs.Get("spec").AsMap().Get("ports").AsArray().Get(0).AsMap().Get("nodePort").AsNumber(); port != 30082 {
		t.Errorf("edge node port %v, want 30082", port)
	}
	for _, absent := range []string{"data"} {
		if _, ok := d.named("switchboard:index:Data", absent); ok {
			t.Errorf("%s declared without redis or postgres", absent)
		}
	}
}

// A value of secretEnv reaches the pods through a Kubernetes Secret, whose
// data the engine keeps encrypted, never as a plain variable of the pods.
func TestConstructKeepsSecretEnvSecret(t *testing.T) {
	in := echo()
	in["app"].(map[string]any)["secretEnv"] = map[string]any{"API_KEY": "s3cret"}
	d, _, err := construct(t, in)
	if err != nil {
		t.Fatal(err)
	}
	secret, ok := d.named("kubernetes:core/v1:Secret", "echo-env")
	if !ok {
		t.Fatalf("no Secret echo-env among %d resources", len(d.resources))
	}
	data := secret.Inputs.Get("stringData")
	v := data.AsMap().Get("API_KEY")
	if v.AsString() != "s3cret" || !(v.Secret() || data.Secret()) {
		t.Errorf("API_KEY in the Secret: %v (data secret: %t), want s3cret marked secret", v, data.Secret())
	}
	dep, ok := d.named("kubernetes:apps/v1:Deployment", "echo")
	if !ok {
		t.Fatal("no deployment echo")
	}
	container := dep.Inputs.Get("spec").AsMap().Get("template").AsMap().Get("spec").AsMap().Get("containers").AsArray().Get(0).AsMap()
	for _, e := range container.Get("env").AsArray().All {
		if e.AsMap().Get("name").AsString() == "API_KEY" {
			t.Errorf("API_KEY is a plain variable of the pods: %v", e)
		}
	}
	if from := container.Get("envFrom"); !from.IsArray() || from.AsArray().Len() != 1 ||
		from.AsArray().Get(0).AsMap().Get("secretRef").AsMap().Get("name").AsString() != "echo-env" {
		t.Errorf("the pods take their variables from %v, want the Secret echo-env", from)
	}
}

// Bad input is refused before anything is declared, naming the field as a
// program spells it.
func TestConstructRefusesBadArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(in map[string]any)
		want string
	}{
		{"no target", func(in map[string]any) { delete(in, "kind") }, "no target: want exactly one of kind or aws"},
		{"two targets", func(in map[string]any) {
			in["aws"] = map[string]any{"region": "eu-west-1", "vpcCidr": "10.0.0.0/16", "certificateArn": "arn", "alarmTopicArn": "arn", "stickiness": "1h"}
		}, "kind and aws both set"},
		{"no image", func(in map[string]any) { delete(in["app"].(map[string]any), "image") }, "app.image: required"},
		{"duration in words", func(in map[string]any) {
			in["app"].(map[string]any)["drain"].(map[string]any)["delay"] = "5 seconds"
		}, `app.drain.delay: "5 seconds": want a Go duration`},
		{"negative window", func(in map[string]any) {
			in["app"].(map[string]any)["scaling"].(map[string]any)["scaleDownWindow"] = "-1m"
		}, `app.scaling.scaleDownWindow: "-1m"`},
		{"store without variable", func(in map[string]any) { in["redis"] = map[string]any{} }, "redis.urlEnv: required"},
		{"aws without a network", func(in map[string]any) {
			delete(in, "kind")
			in["aws"] = map[string]any{"region": "eu-west-1", "certificateArn": "arn", "alarmTopicArn": "arn", "stickiness": "1h"}
		}, "aws: neither vpcCidr nor existingVpc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := echo()
			c.edit(in)
			d, _, err := construct(t, in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if len(d.resources) != 0 {
				t.Errorf("%d resources declared before the refusal", len(d.resources))
			}
		})
	}
}
