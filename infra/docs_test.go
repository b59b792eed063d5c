package main

import (
	"os"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// docFlows are the chat server's flows on a target with its default
// settings.
func docFlows(t *testing.T, target string) []netpolicy.Flow {
	cfg := stackconfig.Defaults()
	var on blueprint.Target = kindTarget(cfg)
	if target == "aws" {
		on = awsTarget(cfg)
	}
	args, err := chatServer(cfg, on)
	if err != nil {
		t.Fatal(err)
	}
	flows, err := blueprint.Flows(args)
	if err != nil {
		t.Fatal(err)
	}
	return flows
}

// docs/abuse.md's table of allowed flows ("Deployed edge") lists every
// flow the policies allow, on each target, and no other.
func TestAbuseDocListsEveryAllowedFlow(t *testing.T) {
	b, err := os.ReadFile("../docs/abuse.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rows := 0
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| kind | ") || strings.HasPrefix(line, "| AWS | ") {
			rows++
		}
	}
	want := 0
	for _, target := range []string{"kind", "AWS"} {
		for _, f := range docFlows(t, strings.ToLower(target)) {
			want++
			var ports []string
			for _, p := range f.Ports {
				ports = append(ports, p.String())
			}
			row := "| " + target + " | " + f.From.String() + " | " + f.To.String() + " | " + strings.Join(ports, ", ") + " |"
			if !strings.Contains(doc, row) {
				t.Errorf("docs/abuse.md lacks the flow %q", row)
			}
		}
	}
	if rows != want {
		t.Errorf("docs/abuse.md lists %d flows, the policies allow %d", rows, want)
	}
}
