// Command pulumi-resource-switchboard is the switchboard Pulumi plugin: the
// engine starts it to construct switchboard:index:Service (package provider).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/switchboard-dev/switchboard/provider"
)

func main() {
	if err := provider.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
