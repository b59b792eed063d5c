package broker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/local"
)

// BenchmarkClusterShard is the capacity of one shard (issue 29): sends to
// 300 rooms whose partitions one primary serves, from 1, 3 or 6 instances
// (brokers), each with its sharded subscription to every room, as an
// instance with members in them holds, and a persist reader that reads and
// acks as the persist writer does (Postgres left out: it is not Redis's
// work). The primary runs alone on CPU 1, everything else on CPU 0, so the
// senders cannot take its core. Reported: sends/s, the primary's CPU per
// send and its busy share of a core (INFO cpu), and sends/s-at-1-core,
// sends/s divided by that share: the rate one primary would carry at this
// cost per send, which is measured only where busy-% is near 100.
func BenchmarkClusterShard(b *testing.B) {
	ctx := context.Background()
	c, err := local.StartCluster(ctx, b.TempDir(), 3, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop(10 * time.Second)
	const partitions = 128
	slot := broker.PartitionSlots(partitions)
	primary, err := c.Owner(ctx, slot("room-0"))
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := 0; len(names) < 300; i++ {
		room := fmt.Sprintf("room-%d", i)
		if owner, err := c.Owner(ctx, slot(room)); err != nil {
			b.Fatal(err)
		} else if owner == primary {
			names = append(names, room)
		}
	}
	setAffinity(b, "0", os.Getpid())
	for _, n := range c.Nodes {
		setAffinity(b, "0", n.Pid())
	}
	setAffinity(b, "1", primary.Pid())
	for _, instances := range []int{1, 3, 6} {
		b.Run(fmt.Sprintf("instances=%d", instances), func(b *testing.B) {
			brokers := make([]*broker.Broker, instances)
			var delivered atomic.Int64
			var wg sync.WaitGroup
			ctx, cancel := context.WithCancel(ctx)
			defer func() { cancel(); wg.Wait() }()
			for i := range brokers {
				br, err := broker.Connect(c.URL(), broker.Options{Partitions: partitions})
				if err != nil {
					b.Fatal(err)
				}
				defer br.Close()
				if err := br.EnsureGroup(ctx); err != nil {
					b.Fatal(err)
				}
				brokers[i] = br
				sub := br.Subscribe(ctx)
				defer sub.Close()
				confirmed := make(chan string, len(names))
				go sub.Run(ctx, func(ev broker.Event) {
					if ev.Subscribed != "" {
						confirmed <- ev.Subscribed
						return
					}
					delivered.Add(1)
				})
				if err := sub.Add(ctx, names...); err != nil {
					b.Fatal(err)
				}
				for range names {
					<-confirmed
				}
				wg.Go(func() { persistReader(ctx, b, br, fmt.Sprintf("bench-%d", i)) })
			}
			var sender atomic.Int64
			cpu, runs := redisCPU(b, primary.Addr()), scriptRuns(b, primary)
			start := time.Now()
			b.SetParallelism(100) // 200 senders on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := int(sender.Add(1))
				br, n := brokers[k%instances], 0
				for pb.Next() {
					n++
					room := names[(k+n)%len(names)]
					if _, err := br.Publish(ctx, room, "alice", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
						strconv.Itoa(k)+"-"+strconv.Itoa(n), time.Now()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			elapsed, used := time.Since(start).Seconds(), redisCPU(b, primary.Addr())-cpu
			busy := used / elapsed
			b.ReportMetric(float64(b.N)/elapsed, "sends/s")
			b.ReportMetric(used*1e6/float64(b.N), "primary-µs/send")
			b.ReportMetric(100*busy, "busy-%")
			b.ReportMetric(float64(b.N)/float64(scriptRuns(b, primary)-runs), "sends/script-run")
			b.ReportMetric(float64(b.N)/elapsed/busy, "sends/s-at-1-core")
		})
	}
}

// persistReader reads and acks the persist streams as the persist writer
// does (batches of 500, a 50 ms linger after a short one) until ctx ends.
func persistReader(ctx context.Context, b *testing.B, br *broker.Broker, consumer string) {
	for ctx.Err() == nil {
		entries, err := br.ReadPersist(ctx, consumer, 500, time.Second)
		if err != nil {
			if ctx.Err() == nil {
				b.Error(err)
			}
			return
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.ID
		}
		if len(ids) > 0 {
			if err := br.AckPersist(ctx, ids); err != nil && ctx.Err() == nil {
				b.Error(err)
				return
			}
		}
		if len(entries) < 500 {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// scriptRuns is how many scripts the node ran so far.
func scriptRuns(b *testing.B, n *local.Redis) int64 {
	info, err := n.Info(context.Background(), "commandstats")
	if err != nil {
		b.Fatal(err)
	}
	var runs int64
	for _, cmd := range []string{"evalsha", "eval"} {
		var v int64
		fmt.Sscanf(info["cmdstat_"+cmd], "calls=%d", &v)
		runs += v
	}
	return runs
}

// setAffinity pins every thread of pid to cpu.
func setAffinity(b *testing.B, cpu string, pid int) {
	if out, err := exec.Command("taskset", "-a", "-p", "-c", cpu, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		b.Fatalf("taskset -a -p -c %s %d: %v\n%s", cpu, pid, err, out)
	}
}
