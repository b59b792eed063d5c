package rediscluster

import (
	"net/url"
	"testing"
)

// The URL is the contract's form, and a password with URL syntax in it
// comes back whole from the userinfo (escaped as net/url escapes it).
func TestURLIsTheClusterForm(t *testing.T) {
	for _, tc := range []struct {
		tls      bool
		password string
		addrs    []string
		want     string
	}{
		{false, "", []string{"redis-0.redis.ns.svc.cluster.local:6379", "redis-1.redis.ns.svc.cluster.local:6379"},
			"redis+cluster://redis-0.redis.ns.svc.cluster.local:6379,redis-1.redis.ns.svc.cluster.local:6379"},
		{true, "tok3n", []string{"clustercfg.x.cache.amazonaws.com:6379"}, "rediss+cluster://:tok3n@clustercfg.x.cache.amazonaws.com:6379"},
	} {
		if got := URL(tc.tls, tc.password, tc.addrs...); got != tc.want {
			t.Errorf("URL(%v, %q, %v) = %s, want %s", tc.tls, tc.password, tc.addrs, got, tc.want)
		}
	}
	const odd = "p@ss:w/rd?#%"
	u, err := url.Parse(URL(true, odd, "h:6379"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := u.User.Password(); got != odd || u.User.Username() != "" || u.Host != "h:6379" || u.Scheme != TLSScheme {
		t.Errorf("parsed back: user %q password %q host %q scheme %q, want password %q on h:6379", u.User.Username(), got, u.Host, u.Scheme, odd)
	}
}

func TestNodesCountsPrimariesAndReplicas(t *testing.T) {
	if n := (Shape{Shards: 3, ReplicasPerShard: 1}).Nodes(); n != 6 {
		t.Errorf("3 shards with 1 replica each: %d nodes, want 6", n)
	}
	if n := (Shape{Shards: 500}).Nodes(); n != 500 {
		t.Errorf("500 shards without replicas: %d nodes, want 500", n)
	}
}
