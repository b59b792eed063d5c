// Command infra is Switchboard's Pulumi program: `pulumi up -s dev` stands
// the chat server up on kind, `pulumi up -s prod` on AWS. It reads the
// stack's typed configuration, turns it into the chat server's
// blueprint.Service (chat.go) on the stack's target (kind.go, aws.go) and
// exports the service's outputs.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/naming"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

func main() { pulumi.Run(program) }

// program declares the stack; tests run it under mocks.
func program(ctx *pulumi.Context) error {
	cfg, err := stackconfig.Load(ctx)
	if err != nil {
		return err
	}
	var target blueprint.Target = kindTarget(cfg)
	if cfg.Target == stackconfig.AWS {
		target = awsTarget(cfg)
	}
	args, err := chatServer(cfg, target)
	if err != nil {
		return err
	}
	svc, err := blueprint.NewService(ctx, naming.Project, args)
	if err != nil {
		return err
	}
	ctx.Export("chatUrl", svc.Endpoint)
	ctx.Export("grafanaUrl", svc.DashboardsURL)
	if cfg.Target == stackconfig.AWS {
		ctx.Export("albDnsName", svc.LoadBalancer)
		ctx.Export("clusterName", svc.ClusterName)
		ctx.Export("kubeconfig", svc.Kubeconfig)
	}
	return nil
}
