package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
)

// BenchmarkPublish is one sender's round trip through the publish script,
// without and with a replica to WAIT for: a script run per send, as on a
// lightly loaded instance, so it also reports the Redis CPU of a run.
func BenchmarkPublish(b *testing.B) {
	withAndWithoutReplica(b, func(b *testing.B, br *broker.Broker, primary *redisServer) {
		ctx := context.Background()
		before := redisCPU(b, primary.Addr())
		for b.Loop() {
			if _, err := br.Publish(ctx, "bench", "alice", "hello", "", time.Now()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((redisCPU(b, primary.Addr())-before)*1e6/float64(b.N), "redis-cpu-µs/op")
	})
}

// BenchmarkPublishConcurrent is a busy instance: 100 senders in 100 rooms at
// once. Besides the time per send it reports the Redis CPU each send costs
// (INFO cpu), which the other processes on the machine disturb less than
// wall time.
func BenchmarkPublishConcurrent(b *testing.B) {
	withAndWithoutReplica(b, func(b *testing.B, br *broker.Broker, primary *redisServer) {
		ctx := context.Background()
		var room atomic.Int64
		before := redisCPU(b, primary.Addr())
		b.SetParallelism(50) // 100 senders on 2 cores
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			name := fmt.Sprintf("bench-%d", room.Add(1))
			for pb.Next() {
				if _, err := br.Publish(ctx, name, "alice", "hello", "", time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric((redisCPU(b, primary.Addr())-before)*1e6/float64(b.N), "redis-cpu-µs/op")
	})
}

// BenchmarkPublishStream is an instance taking sends as clients make them,
// not as fast as it can: sends at 1,500 a second, each to one of 1,000
// rooms, none waiting for another's reply, without and with
// Options.Coalesce. It reports the script runs a send and Redis's CPU a
// send, and the broker's process CPU a send (this test process's).
func BenchmarkPublishStream(b *testing.B) {
	for _, coalesce := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond} {
		b.Run("coalesce="+coalesce.String(), func(b *testing.B) {
			primary := startRedis(b)
			rdb := redis.NewClient(&redis.Options{Addr: primary.Addr()})
			count := &pipelineCounter{}
			rdb.AddHook(count)
			br := broker.New(rdb, broker.Options{Coalesce: coalesce})
			defer br.Close()
			ctx := context.Background()
			const rate, rooms = 1500, 1000
			for r := range rooms { // seeded: a new room's reservation is not the stream's work
				if _, err := br.Publish(ctx, fmt.Sprintf("stream-%d", r), "alice", "hello", "", time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			runs, redisBefore, selfBefore := count.pipelines.Load(), redisCPU(b, primary.Addr()), selfCPU()
			b.ResetTimer()
			var wg sync.WaitGroup
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			for i := range b.N {
				<-tick.C
				wg.Go(func() {
					if _, err := br.Publish(ctx, fmt.Sprintf("stream-%d", i%rooms), "alice", "hello", "", time.Now()); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(count.pipelines.Load()-runs)/n, "runs/op")
			b.ReportMetric((redisCPU(b, primary.Addr())-redisBefore)*1e6/n, "redis-cpu-µs/op")
			b.ReportMetric((selfCPU()-selfBefore)*1e6/n, "self-cpu-µs/op")
		})
	}
}

// selfCPU is the seconds of CPU this process used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// withAndWithoutReplica runs bench against a Redis of its own, alone
// (no-wait) and with a replica that every send WAITs for.
func withAndWithoutReplica(b *testing.B, bench func(*testing.B, *broker.Broker, *redisServer)) {
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
			bench(b, br, primary)
		})
	}
}

// redisCPU is the seconds of CPU the Redis server at addr used so far.
func redisCPU(b *testing.B, addr string) float64 {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}
