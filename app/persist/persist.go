// Package persist moves accepted messages from the Redis persist stream into
// Postgres. Every instance runs a Writer in one consumer group; an entry is
// acked only once its row is committed, and entries left by a killed instance
// are claimed by the others, so an acked message reaches Postgres even if the
// instance that accepted it dies right after the ack.
package persist

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
)

// Source is the queue of messages to write (the broker's persist stream).
type Source interface {
	EnsureGroup(ctx context.Context) error
	ReadPersist(ctx context.Context, consumer string, count int, block time.Duration) ([]broker.PersistEntry, error)
	ClaimPersist(ctx context.Context, consumer string, minIdle time.Duration, count int) (claimed []broker.PersistEntry, lost []string, err error)
	AckPersist(ctx context.Context, ids []string) error
	// Requeue puts back those of entries the stream lost, returning how many.
	Requeue(ctx context.Context, entries []broker.PersistEntry) (int, error)
	PersistBacklog(ctx context.Context) (int64, error)
}

// Sink is the durable history (the store).
type Sink interface {
	Migrate(ctx context.Context) error
	// Insert stores msgs, returning those it refused to store over a
	// conflicting row (kept aside by the store, never retried).
	Insert(ctx context.Context, msgs []protocol.Message) ([]store.Rejection, error)
	// Refuse keeps aside a message whose data Postgres refuses.
	Refuse(ctx context.Context, m protocol.Message) error
}

// DefaultClaimIdle is ClaimIdle's default.
const DefaultClaimIdle = 5 * time.Second

// ClaimDelay is how long an entry read by a writer that died waits for
// another writer to take it over: claimIdle for it to count as idle, and up
// to claimEvery more until a writer next tries (once the read or batch in
// hand is done). Then it is written like any batch.
func ClaimDelay(claimIdle time.Duration) time.Duration { return claimIdle + claimEvery(claimIdle) }

// claimEvery is how often a writer looks for idle entries: twice per
// claimIdle, so that none waits much past it.
func claimEvery(claimIdle time.Duration) time.Duration { return claimIdle / 2 }

// Writer is one instance's member of the persist consumer group.
type Writer struct {
	Source   Source
	Sink     Sink
	Consumer string // the instance id; a restarted instance's old entries are claimed once idle, by it or another
	Metrics  *metrics.Metrics
	Log      *slog.Logger

	Batch     int           // entries per insert; default 500
	ClaimIdle time.Duration // how long an entry may sit unacked before another consumer takes it; default DefaultClaimIdle
	// Linger is how long the writer waits after a batch smaller than Batch
	// before it reads again (default 50ms), so that a steady stream is
	// written in batches, not a commit per few messages: at 5,000 msg/s
	// that is 20 commits a second instead of hundreds. Nothing waits on it
	// but history reads from Postgres, which Redis's log covers meanwhile.
	Linger time.Duration

	msgs []protocol.Message // reused by write
	ids  []string
}

// Run writes until ctx ends, then returns once the batch in hand is written
// (or given up, to be claimed by another instance).
func (w *Writer) Run(ctx context.Context) {
	if w.Batch <= 0 {
		w.Batch = 500
	}
	if w.ClaimIdle <= 0 {
		w.ClaimIdle = DefaultClaimIdle
	}
	if w.Linger <= 0 {
		w.Linger = 50 * time.Millisecond
	}
	if !w.retry(ctx, "migrate", func(c context.Context) error { return w.Sink.Migrate(c) }, w.Metrics.PostgresErrors.WithLabelValues(metrics.OpPersistMigrate)) {
		return
	}
	// Not retried here: a read that finds a group missing creates it, so a
	// Redis, or a cluster's shard, down at start holds back no other stream.
	if err := w.Source.EnsureGroup(ctx); err != nil {
		w.Metrics.RedisErrors.WithLabelValues(metrics.OpPersistGroup).Inc()
		w.Log.Warn("persist: create the consumer groups", "err", err)
	}
	for _, reason := range store.RejectReasons {
		w.Metrics.PersistRejected.WithLabelValues(reason)
	}
	w.Log.Info("persisting messages to postgres", "consumer", w.Consumer)
	lastClaim, lastBacklog := time.Time{}, time.Time{}
	for ctx.Err() == nil {
		var entries []broker.PersistEntry
		var claimErr, readErr error
		if time.Since(lastClaim) >= claimEvery(w.ClaimIdle) {
			lastClaim = time.Now()
			var lost []string
			entries, lost, claimErr = w.Source.ClaimPersist(ctx, w.Consumer, w.ClaimIdle, w.Batch)
			if len(lost) > 0 {
				w.Metrics.PersistLost.Add(float64(len(lost)))
				w.Log.Error("queued messages were deleted from the persist stream before they were stored", "count", len(lost), "ids", lost)
			}
		}
		if len(entries) == 0 {
			entries, readErr = w.Source.ReadPersist(ctx, w.Consumer, w.Batch, time.Second)
		}
		// With a shard of a cluster down, the entries of the others come
		// with its error: they are written, so that one shard's outage
		// does not hold back the history of every room.
		err := errors.Join(claimErr, readErr)
		if err != nil && ctx.Err() == nil {
			w.Metrics.RedisErrors.WithLabelValues(metrics.OpPersistRead).Inc()
			w.Log.Warn("read persist stream", "err", err)
		}
		if err != nil && len(entries) == 0 {
			sleep(ctx, time.Second)
			continue
		}
		if len(entries) == 0 {
			w.Metrics.PersistLag.Set(0)
		} else {
			w.write(ctx, entries)
			if len(entries) < w.Batch {
				sleep(ctx, w.Linger)
			}
		}
		if time.Since(lastBacklog) >= 5*time.Second {
			lastBacklog = time.Now()
			if n, err := w.Source.PersistBacklog(ctx); err == nil {
				w.Metrics.PersistBacklog.Set(float64(n))
			}
		}
	}
}

// write inserts the entries and acks them, retrying while Postgres is down.
// Shutdown does not cut a write short: it gets a few seconds to finish.
func (w *Writer) write(ctx context.Context, entries []broker.PersistEntry) {
	// The batch's messages and ids, in slices kept for the next batch:
	// nothing holds them once write returns (the rejections are copies).
	msgs, ids := w.msgs[:0], w.ids[:0]
	defer func() {
		clear(msgs)
		clear(ids)
		w.msgs, w.ids = msgs[:0], ids[:0]
	}()
	oldest := time.Now()
	for _, e := range entries {
		ids = append(ids, e.ID)
		m, err := protocol.ParseMessage(e.Frame)
		if err != nil {
			w.Log.Error("dropping an unreadable persist entry", "id", e.ID, "err", err)
			continue
		}
		msgs = append(msgs, m)
		if m.TS.Before(oldest) {
			oldest = m.TS
		}
	}
	flush, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(5*time.Second, cancel)
	})
	defer stop()
	var rejected []store.Rejection
	attempts, requeued := 0, 0
	insert := func(c context.Context) error {
		if attempts++; attempts > 1 {
			// While Postgres refuses, Redis may lose these entries (a wipe,
			// a failover): this writer would be their only holder, unseen
			// by catch-ups, which would pass over them. Put them back.
			if n, err := w.Source.Requeue(c, entries); err == nil && n > 0 {
				requeued = n
				return nil
			}
		}
		w.Metrics.PersistLag.Set(time.Since(oldest).Seconds())
		ic, icancel := context.WithTimeout(c, 5*time.Second)
		defer icancel()
		var err error
		rejected, err = w.insert(ic, msgs)
		return err
	}
	if len(msgs) > 0 && !w.retry(flush, "insert", insert, w.Metrics.PostgresErrors.WithLabelValues(metrics.OpPersistInsert)) {
		return
	}
	if requeued > 0 {
		// The rest are still pending on the stream: claimed later.
		w.Log.Warn("redis lost queued messages this writer held; put them back on the persist stream", "count", requeued)
		return
	}
	for _, r := range rejected {
		w.Metrics.PersistRejected.WithLabelValues(r.Reason).Inc()
		if r.Reason == store.RejectRefused {
			continue // logged where it was found
		}
		// Loud, because it is a broken guarantee, not a bad input: the
		// message was acked under a seq or id that another stored message has.
		w.Log.Error("an acked message conflicts with a stored one; kept in rejected_messages, not in the history",
			"reason", r.Reason, "room", r.Room, "seq", r.Seq, "user", r.User, "id", r.ID)
	}
	w.Metrics.Persisted.Add(float64(len(msgs) - len(rejected)))
	w.Metrics.PersistLag.Set(time.Since(oldest).Seconds())
	if err := w.Source.AckPersist(flush, ids); err != nil {
		// Unacked rows are claimed and written again: the insert is idempotent.
		w.Metrics.RedisErrors.WithLabelValues(metrics.OpPersistAck).Inc()
		w.Log.Warn("ack persisted entries", "err", err)
	}
}

// insert stores msgs. A batch Postgres refuses for its data is split until
// each refused message is alone, and those are set aside (store.Refuse), so
// that one value the edge let through never holds back the messages behind
// it, nor, claimed by every instance in turn, the whole deployment's.
func (w *Writer) insert(ctx context.Context, msgs []protocol.Message) ([]store.Rejection, error) {
	rejected, err := w.Sink.Insert(ctx, msgs)
	switch {
	case err == nil || !store.DataError(err):
		return rejected, err
	case len(msgs) == 1:
		if err := w.Sink.Refuse(ctx, msgs[0]); err != nil {
			return nil, err
		}
		w.Log.Error("postgres refuses a queued message's data; kept in rejected_messages", "room", msgs[0].Room, "seq", msgs[0].Seq, "err", err)
		return []store.Rejection{{Message: msgs[0], Reason: store.RejectRefused}}, nil
	}
	half := len(msgs) / 2
	first, err := w.insert(ctx, msgs[:half])
	if err != nil {
		return nil, err
	}
	second, err := w.insert(ctx, msgs[half:])
	if err != nil {
		return nil, err
	}
	return append(first, second...), nil
}

// retry runs op until it succeeds or ctx ends, backing off from 250 ms to
// 5 s and counting each failure in errs.
func (w *Writer) retry(ctx context.Context, what string, op func(context.Context) error, errs prometheus.Counter) bool {
	backoff := 250 * time.Millisecond
	for {
		err := op(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		errs.Inc()
		w.Log.Warn("persist: "+what+" failed; retrying", "err", err, "in", backoff)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
