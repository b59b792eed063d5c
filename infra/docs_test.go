package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-dev/switchboard/blueprint"
	"github.com/switchboard-dev/switchboard/infra/netpolicy"
	"github.com/switchboard-dev/switchboard/infra/rediscluster"
	"github.com/switchboard-dev/switchboard/infra/stackconfig"
)

// docFlows are the chat server's flows on a target with its default
// settings; "kind cluster" is kind with redisMode cluster.
func docFlows(t *testing.T, target string) []netpolicy.Flow {
	cfg := stackconfig.Defaults()
	if target == "kind cluster" {
		cfg.RedisMode, cfg.RedisCluster = stackconfig.Cluster, &rediscluster.Shape{Shards: stackconfig.DefaultShards, ReplicasPerShard: stackconfig.DefaultReplicasPerShard}
	}
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
// flow the policies allow, on each target and with kind's Redis Cluster,
// and no other.
func TestAbuseDocListsEveryAllowedFlow(t *testing.T) {
	b, err := os.ReadFile("../docs/abuse.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	rows := 0
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| kind | ") || strings.HasPrefix(line, "| AWS | ") || strings.HasPrefix(line, "| kind cluster | ") {
			rows++
		}
	}
	want := 0
	for _, target := range []string{"kind", "AWS", "kind cluster"} {
		for _, f := range docFlows(t, strings.ToLower(target)) {
			// The cluster's rows are the flows it adds to kind's.
			if target == "kind cluster" && slices.ContainsFunc(docFlows(t, "kind"), func(k netpolicy.Flow) bool { return fmt.Sprint(k) == fmt.Sprint(f) }) {
				continue
			}
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
