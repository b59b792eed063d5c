package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"testing"

	p "github.com/pulumi/pulumi-go-provider"

	"github.com/switchboard-dev/switchboard/provider"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite schema.json from the provider (make schema)")

// schemaJSON is the schema the provider serves, as schema.json holds it.
func schemaJSON(t *testing.T) []byte {
	t.Helper()
	prov, err := provider.New()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := p.GetSchema(context.Background(), provider.Name, provider.Version, prov)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// Issue 28 item 4: the schema in the repository is the one the provider
// serves, so that SDKs generated from it and the docs describe the plugin.
func TestSchemaIsTheProvidersOwn(t *testing.T) {
	got := schemaJSON(t)
	if *updateSchema {
		if err := os.WriteFile("schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("provider/schema.json differs from the schema the provider serves: run `make schema` and commit it")
	}
}

// The component keeps the token Go programs register (blueprint.NewService),
// with the blueprint's outputs, and takes its target as one of two objects.
func TestSchemaServesTheGoComponent(t *testing.T) {
	var spec struct {
		Name      string
		Resources map[string]struct {
			IsComponent     bool
			Properties      map[string]json.RawMessage
			InputProperties map[string]json.RawMessage
			RequiredInputs  []string
		}
	}
	if err := json.Unmarshal(schemaJSON(t), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Name != "switchboard" {
		t.Errorf("package %q, want switchboard (the plugin pulumi-resource-switchboard)", spec.Name)
	}
	svc, ok := spec.Resources["switchboard:index:Service"]
	if !ok || !svc.IsComponent {
		t.Fatalf("no component switchboard:index:Service in %v", spec.Resources)
	}
	for _, out := range []string{"endpoint", "dashboardsUrl", "kubeconfig", "clusterName", "loadBalancer"} {
		if _, ok := svc.Properties[out]; !ok {
			t.Errorf("no output %s", out)
		}
	}
	for _, in := range []string{"namespace", "app", "redis", "postgres", "observability", "metrics", "kind", "aws"} {
		if _, ok := svc.InputProperties[in]; !ok {
			t.Errorf("no input %s", in)
		}
	}
}
