package store_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/chattest"
	loadtool "github.com/switchboard-dev/switchboard/app/load"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// BenchmarkInsert is the persist writers' side of Postgres (issue 29: what
// N Redis shards feed it): b.N batches of 500 64-byte messages over 1,000 rooms,
// as the persist writer inserts them, from 1 or 3 writers at once (one per
// instance). Reported: rows/s, and Postgres's CPU per row (its process
// tree, from /proc) with rows/s-at-1-core, the rows one core would carry at
// that cost. The local Postgres runs with fsync off (app/local): a managed
// one's commits also wait for its disk.
func BenchmarkInsert(b *testing.B) {
	const batch, rooms = 500, 1000
	pg, st := chattest.StartStore(b)
	ctx := context.Background()
	var runs atomic.Int64 // each run's rooms are new: its seqs start at 1
	for _, writers := range []int{1, 3} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			prefix := fmt.Sprintf("run-%d-room-", runs.Add(1))
			ts := time.Now()
			var next atomic.Int64 // the next batch: its rows' seqs follow from it
			cpu, err := loadtool.TreeCPU(pg.Pid())
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					msgs := make([]protocol.Message, batch)
					for n := next.Add(1) - 1; n < int64(b.N); n = next.Add(1) - 1 {
						for i := range msgs {
							k := n*batch + int64(i)
							msgs[i] = protocol.Message{Room: prefix + strconv.FormatInt(k%rooms, 10), Seq: k/rooms + 1, User: "alice",
								Text: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ID: fmt.Sprint(k), TS: ts}
						}
						if _, err := st.Insert(ctx, msgs); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			after, err := loadtool.TreeCPU(pg.Pid())
			if err != nil {
				b.Fatal(err)
			}
			elapsed, rows := time.Since(start).Seconds(), float64(b.N*batch)
			used := (after - cpu).Seconds()
			b.ReportMetric(rows/elapsed, "rows/s")
			b.ReportMetric(used*1e6/rows, "postgres-µs/row")
			b.ReportMetric(rows/used, "rows/s-at-1-core")
		})
	}
}
