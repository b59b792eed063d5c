// Package rediscluster is what the two Redis Clusters the stacks run have
// in common, the in-cluster one on kind (infra/data) and ElastiCache's
// cluster mode on AWS (infra/managed): their shape, and the REDIS_URL that
// hands one to the chat server.
package rediscluster

import (
	"fmt"
	"net/url"
	"strings"
)

// REDIS_URL's schemes for a cluster (app/config): seed nodes, plain or TLS.
const (
	Scheme    = "redis+cluster"
	TLSScheme = "rediss+cluster"
)

// MaxReplicasPerShard is ElastiCache's limit (CreateReplicationGroup,
// ReplicasPerNodeGroup: 0 to 5), which the kind cluster keeps too.
const MaxReplicasPerShard = 5

// Shape is a cluster's size: Shards primaries (each owning a share of the
// 16384 hash slots), each with ReplicasPerShard replicas.
type Shape struct {
	Shards, ReplicasPerShard int
}

// Nodes is how many Redis servers the cluster runs.
func (s Shape) Nodes() int { return s.Shards * (1 + s.ReplicasPerShard) }

// URL is the REDIS_URL of a cluster reached at the seed nodes addrs
// (host:port), with TLS or not, and a password ("" for none):
// redis+cluster://[:password@]host:port[,host:port...].
func URL(tls bool, password string, addrs ...string) string {
	scheme := Scheme
	if tls {
		scheme = TLSScheme
	}
	auth := ""
	if password != "" {
		auth = url.UserPassword("", password).String() + "@"
	}
	return fmt.Sprintf("%s://%s%s", scheme, auth, strings.Join(addrs, ","))
}
