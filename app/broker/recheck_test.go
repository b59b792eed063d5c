package broker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/persist"
	"github.com/switchboard-dev/switchboard/app/store"
)

// A retry whose dedupe key Redis lost while its original is still queued
// for Postgres (no writer has stored it yet) is found in the persist
// backlog: answered with the original seq, stored once. Looked up in
// Postgres alone it would race the writer and be accepted a second time.
func TestARetryStillQueuedForPostgresIsAnsweredFromTheBacklog(t *testing.T) {
	r := startRedis(t)
	_, st := startStore(t)
	b := connect(t, r.URL(), broker.Options{Ledger: st})
	rdb := r.client()
	ctx := context.Background()
	s := newSender(t, b, "queued")
	s.send()
	orig := s.send()
	// Every key with a TTL gone (what an evicting policy may do), the
	// persist stream, which has none, kept.
	keys, err := rdb.Keys(ctx, "chat:{queued}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("room keys %v, %v", keys, err)
	}
	rdb.Del(ctx, keys...)
	retry, err := b.Publish(ctx, "queued", "alice", s.acked[orig.Seq], "id-2", time.Now())
	if err != nil || !retry.Duplicate || retry.Seq != orig.Seq {
		t.Fatalf("retry of id-2: %+v, %v; want the duplicate of seq %d", retry, err, orig.Seq)
	}
	persistAll(t, b, st)
	rows, err := st.Range(ctx, "queued", 0, 1<<62, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Errorf("Postgres holds %d messages of the room, want 2: %+v", len(rows), rows)
	}
}

// A room's next block is taken only when it follows the current one. Here
// another side of a split brain reserved the block after this room's (its
// reseed): this side, out of seqs, restarts above that reservation under a
// new epoch, recorded as a floor, instead of counting on into it.
func TestAnExtensionTakesOnlyTheBlockThatFollows(t *testing.T) {
	r := startRedis(t)
	_, st := startStore(t)
	const block = 16
	b := connect(t, r.URL(), broker.Options{SeqBlock: block, Ledger: st})
	ctx := context.Background()
	s := newSender(t, b, "split")
	first := s.send()
	other, _, err := st.ReserveSeqs(ctx, "split", 0, block, true)
	if err != nil {
		t.Fatal(err)
	}
	for range block {
		s.send()
	}
	for seq := range s.acked {
		if seq > other-block && seq <= other {
			t.Errorf("seq %d acked inside the other side's reservation %d..%d", seq, other-block+1, other)
		}
	}
	last := s.send()
	if last.Epoch == first.Epoch {
		t.Errorf("the room went on under epoch %q past the other side's reservation", last.Epoch)
	}
	floors, _, err := st.Floors(ctx, "split", 0, 1<<62)
	if err != nil || len(floors) < 2 || floors[len(floors)-1] < other {
		t.Errorf("restart floors %v, %v: want one at or above %d", floors, err, other)
	}
}

// failingLedger is Postgres down, counting the reservations asked of it.
type failingLedger struct{ reserves atomic.Int64 }

func (l *failingLedger) ReserveSeqs(context.Context, string, int64, int64, bool) (int64, bool, error) {
	l.reserves.Add(1)
	return 0, false, errors.New("connection refused")
}

func (l *failingLedger) SentSeq(context.Context, string, string, string) (int64, bool, error) {
	return 0, false, errors.New("connection refused")
}

func (l *failingLedger) Fence(context.Context) (int64, error) {
	return 0, errors.New("connection refused")
}

// A new room cannot take its first message while Postgres is down (its
// seqs need a durable reservation): every sender is refused with ErrNoSeqs,
// after one reservation attempt rather than a queue of them, each waiting
// on the seeding lock in a 5 ms loop.
func TestANewRoomIsRefusedAtOnceWhilePostgresIsDown(t *testing.T) {
	r := startRedis(t)
	ledger := &failingLedger{}
	b := connect(t, r.URL(), broker.Options{Ledger: ledger})
	const senders = 20
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := b.Publish(ctx, "brand-new", "alice", "hi", "", time.Now())
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, broker.ErrNoSeqs) {
			t.Errorf("send to a new room with Postgres down: %v, want ErrNoSeqs", err)
		}
	}
	if n := ledger.reserves.Load(); n > 2 {
		t.Errorf("%d senders made %d reservation attempts, want 1 (2 if the refusal expired)", senders, n)
	}
}

// A queued message the store cannot take as it is, is not dropped in
// silence, nor retried forever (retried whole, a batch with it would hold
// back every room's persistence): it goes to rejected_messages with its
// reason, is counted, and the messages around it are stored. Two kinds: one
// that conflicts with a stored row (a seq handed out twice), and one whose
// data Postgres refuses (a NUL in its text, which the edge now refuses but
// an older instance may have queued), found by splitting its batch.
func TestTheWriterSetsAsideWhatTheStoreCannotTake(t *testing.T) {
	for _, tc := range []struct {
		reason string
		text   string // the queued message's, under a seq the room acked first
	}{
		{store.RejectSeqTaken, "not the original"},
		{store.RejectRefused, `a\u0000b`},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			r := startRedis(t)
			_, st := startStore(t)
			b := connect(t, r.URL(), broker.Options{Ledger: st})
			ctx := context.Background()
			room := "aside-" + tc.reason
			s := newSender(t, b, room)
			first := s.send()
			persistAll(t, b, st)
			for range 4 {
				s.send()
			}
			queued := `{"op":"message","room":"` + room + `","seq":` + strconv.FormatInt(first.Seq, 10) +
				`,"user":"mallory","text":"` + tc.text + `","ts":"2026-12-06T10:00:00.000Z"}`
			if err := r.client().XAdd(ctx, &redis.XAddArgs{Stream: broker.PersistStream, Values: []string{"f", queued}}).Err(); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				s.send()
			}
			m := metrics.New()
			persistCounted(t, b, st, m) // the backlog drains past it
			if v := testutil.ToFloat64(m.PersistRejected.WithLabelValues(tc.reason)); v != 1 {
				t.Errorf("chat_persist_rejected_total{reason=%s} = %v, want 1", tc.reason, v)
			}
			rows, err := st.Range(ctx, room, 0, 1<<62, 100)
			if err != nil || len(rows) != 10 || rows[0].Text != s.acked[first.Seq] {
				t.Errorf("stored %d rows, %v: want the 10 acked, the first as acked", len(rows), err)
			}
		})
	}
}

// A writer that read entries and waits for Postgres is their only holder
// once Redis loses them (a wipe, a failover to a replica that never got
// them): it puts them back on the persist stream, where catch-ups look for
// messages not stored yet, and each is stored once when Postgres is back.
func TestAWriterPutsBackWhatRedisLostWhileItWaitedForPostgres(t *testing.T) {
	r := startRedis(t)
	pg, st := startStore(t)
	b := connect(t, r.URL(), broker.Options{Ledger: st})
	ctx := context.Background()
	m := metrics.New()
	w := &persist.Writer{Source: b, Sink: st, Consumer: "w", Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(run) }()
	defer func() { stop(); <-done }()
	s := newSender(t, b, "held")
	s.send() // the room's seqs are reserved
	chattest.Eventually(t, 30*time.Second, "the first message stored", func() bool {
		n, err := b.PersistBacklog(ctx)
		return err == nil && n == 0
	})
	if err := pg.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		s.send()
	}
	chattest.Eventually(t, 30*time.Second, "the writer to fail an insert", func() bool {
		return testutil.ToFloat64(m.PostgresErrors.WithLabelValues(metrics.OpPersistInsert)) > 0
	})
	// What the writer holds is what it read and has not acked; the rest of
	// the stream is lost with Redis.
	held, err := r.client().XPending(ctx, broker.PersistStream, "store").Result()
	if err != nil || held.Count == 0 {
		t.Fatalf("the writer holds %+v, %v", held, err)
	}
	r.client().FlushAll(ctx)
	chattest.Eventually(t, 30*time.Second, "the held entries back on the stream", func() bool {
		pending, err := b.Pending(ctx, "held", 0, 1<<62)
		return err == nil && int64(len(pending)) == held.Count
	})
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, time.Minute, "the backlog stored", func() bool {
		n, err := b.PersistBacklog(ctx)
		return err == nil && n == 0
	})
	rows, err := st.Range(ctx, "held", 0, 1<<62, 100)
	if err != nil || int64(len(rows)) != 1+held.Count {
		t.Fatalf("%d rows stored, %v: want the first and the %d held", len(rows), err, held.Count)
	}
}

// A message standing twice in the backlog (put back by a writer while its
// first entry was still there) is pending once.
func TestAMessageTwiceInTheBacklogIsPendingOnce(t *testing.T) {
	r := startRedis(t)
	b := connect(t, r.URL(), broker.Options{})
	ctx := context.Background()
	if _, err := b.Publish(ctx, "twice", "alice", "hi", "c-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := b.ReadPersist(ctx, "w", 10, 0)
	if err != nil || len(held) != 1 {
		t.Fatalf("read %v, %v", held, err)
	}
	if err := r.client().XAdd(ctx, &redis.XAddArgs{Stream: broker.PersistStream, Values: []string{"f", held[0].Frame}}).Err(); err != nil {
		t.Fatal(err)
	}
	pending, err := b.Pending(ctx, "twice", 0, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != 1 {
		t.Fatalf("pending %+v, %v: want seq 1 once", pending, err)
	}
}
