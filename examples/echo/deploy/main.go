// Command deploy is the echo example's Pulumi program (Pulumi.yaml's
// main): `pulumi up` here deploys the echo server to the dev stack's kind
// cluster. The program is package echostack, which `make e2e` also runs.
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/switchboard-dev/switchboard/examples/echo/deploy/echostack"
)

func main() { pulumi.Run(echostack.Program) }
