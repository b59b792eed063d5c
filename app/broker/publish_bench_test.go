package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// BenchmarkPublish is one sender's round trip through the publish script,
// without and with a replica to WAIT for.
func BenchmarkPublish(b *testing.B) {
	for _, tc := range []struct {
		name     string
		replicas int
	}{{"no-wait", 0}, {"wait-for-1-replica", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			primary := startRedis(b)
			if tc.replicas > 0 {
				startReplica(b, primary)
			}
			br, err := broker.Connect(primary.URL(), broker.Options{MinReplicas: tc.replicas})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			ctx := context.Background()
			for b.Loop() {
				if _, err := br.Publish(ctx, "bench", "alice", "hello", "", time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
