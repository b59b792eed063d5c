package target

import (
	"strings"
	"testing"
)

// The text of `redis-cli cluster info && redis-cli info replication` on a
// node of a 6-node cluster, as the kind target reads it after a restart
// (redis-cli ends its lines with \r\n).
func nodeInfo(state, known, role, link string) string {
	lines := []string{"cluster_state:" + state, "cluster_slots_assigned:16384", "cluster_slots_ok:16384",
		"cluster_known_nodes:" + known, "# Replication", "role:" + role}
	if role == "slave" {
		lines = append(lines, "master_host:10.244.0.17", "master_port:6379", "master_link_status:"+link)
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

func TestAClusterNodeIsHealthyOnlyWhenOkFullyKnownAndItsReplicaLinkUp(t *testing.T) {
	for _, tc := range []struct {
		name, info string
		healthy    bool
	}{
		{"a primary of an ok cluster", nodeInfo("ok", "6", "master", ""), true},
		{"a replica in sync", nodeInfo("ok", "6", "slave", "up"), true},
		{"a replica whose primary's address is stale", nodeInfo("ok", "6", "slave", "down"), false},
		{"a cluster not ok", nodeInfo("fail", "6", "master", ""), false},
		{"a node that knows only itself", nodeInfo("ok", "1", "master", ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := clusterNodeHealthy(tc.info, 6)
			if (err == nil) != tc.healthy {
				t.Errorf("healthy = %v (%v), want %v", err == nil, err, tc.healthy)
			}
		})
	}
}
