package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
)

// History reads have a pool of their own (CATCHUP_CONCURRENCY): 50 of them
// stuck in Postgres hold its 2 connections and wait for them, while the
// persist writer's inserts go on, each in well under a second. With one
// pool the stuck reads took every connection and the inserts waited.
func TestHistoryReadsNeverTakeTheWritersConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, st := chattest.StartStore(t, store.WithReadConns(2))
	admin, probe := connect(ctx, t, pg.URL()), connect(ctx, t, pg.URL())

	// Reads of room_floors (a catch-up's) block behind this lock; inserts
	// into messages do not touch the table.
	lock, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE room_floors IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const reads = 50
	errs := make(chan error, reads)
	var wg sync.WaitGroup
	for range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := st.Floors(ctx, "r", 0, 100)
			errs <- err
		}()
	}
	waiting := func() int {
		var n int
		if err := probe.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE '%FROM room_floors%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); waiting() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d history reads waiting in Postgres after 10 s, want 2", waiting())
		}
	}

	ts := time.Now().UTC().Truncate(time.Microsecond)
	for i := 1; i <= 20; i++ {
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		_, err := st.Insert(ictx, []protocol.Message{{Room: "r", Seq: int64(i), User: "alice", Text: "hi", ID: fmt.Sprint("c-", i), TS: ts}})
		icancel()
		if err != nil {
			t.Fatalf("insert %d while %d history reads wait: %v (after %s)", i, reads, err, time.Since(start).Round(time.Millisecond))
		}
	}
	if n := waiting(); n != 2 {
		t.Fatalf("%d history reads in Postgres at once, want the read pool's 2", n)
	}

	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a history read failed once the lock was gone: %v", err)
		}
	}
	msgs, err := st.Before(ctx, "r", 100, 50)
	if err != nil || len(msgs) != 20 {
		t.Fatalf("history after the inserts: %d messages, %v; want 20", len(msgs), err)
	}
}
