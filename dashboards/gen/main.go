// Command gen writes dashboards/switchboard.json and
// dashboards/grafana-alerting.yaml; `go generate ./dashboards` runs it.
package main

import (
	"fmt"
	"os"

	"github.com/switchboard-dev/switchboard/dashboards"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	files, err := dashboards.Generated()
	if err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}
