// Command infra is Switchboard's Pulumi program: `pulumi up -s dev` stands
// the service up on kind, `pulumi up -s prod` on AWS. It reads the stack's
// typed configuration and wires the components; each lives in its own package.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

func main() { pulumi.Run(program) }

// program declares the stack; tests run it under mocks.
func program(ctx *pulumi.Context) error {
	cfg, err := stackconfig.Load(ctx)
	if err != nil {
		return err
	}
	if cfg.Target == stackconfig.AWS {
		return awsStack(ctx, cfg)
	}
	return kindStack(ctx, cfg)
}
