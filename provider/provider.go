// Package provider serves blueprint.Service as a Pulumi component provider
// named switchboard, so that a program in any Pulumi language (YAML,
// TypeScript, Python, C#, Java) can declare a switchboard:index:Service.
// pulumi-go-provider's infer package derives the schema (schema.json beside
// this file, `make schema`) from the Go types of args.go; Construct maps
// them to blueprint.ServiceArgs and declares the component.
package provider

import (
	"context"

	p "github.com/pulumi/pulumi-go-provider"
	"github.com/pulumi/pulumi-go-provider/infer"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
)

// Name is the package's: the plugin binary is pulumi-resource-switchboard
// and the tokens are switchboard:index:*.
const Name = "switchboard"

// Version is the plugin's, set at release with -ldflags -X.
var Version = "0.1.0-dev"

// Service is the component as the provider serves it: its inputs are
// ServiceArgs, its outputs blueprint.Service's.
type Service struct{}

// Annotate keeps the token Go programs register, switchboard:index:Service.
func (s *Service) Annotate(a infer.Annotator) {
	a.SetToken("index", "Service")
	a.Describe(s, "A WebSocket service deployed with the Switchboard topology: its pods and autoscaler, "+
		"a sticky edge, NetworkPolicies, monitoring and, when asked, Redis and Postgres, on kind or on AWS.")
}

// Construct declares blueprint.Service.
func (*Service) Construct(ctx *pulumi.Context, name, _ string, args ServiceArgs, opts pulumi.ResourceOption) (*blueprint.Service, error) {
	bargs, err := args.Blueprint()
	if err != nil {
		return nil, err
	}
	return blueprint.NewService(ctx, name, bargs, opts)
}

// New is the provider.
func New() (p.Provider, error) {
	return infer.NewProviderBuilder().
		WithDisplayName("Switchboard").
		WithDescription("Deploys a WebSocket service with the Switchboard topology on kind or AWS.").
		WithLicense("Apache-2.0").
		WithRepository("https://github.com/switchboard-dev/switchboard").
		WithNamespace("switchboard-dev").
		WithGoImportPath("github.com/switchboard-dev/switchboard/sdk/go/switchboard").
		// The types of this package are the index module's.
		WithModuleMap(map[tokens.ModuleName]tokens.ModuleName{"provider": "index"}).
		WithComponents(infer.Component(&Service{})).
		Build()
}

// Run serves the provider to the engine that started the plugin.
func Run(ctx context.Context) error {
	prov, err := New()
	if err != nil {
		return err
	}
	return p.RunProvider(ctx, Name, Version, prov)
}
