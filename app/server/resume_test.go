package server_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/gruntwork-io/terratest/modules/retry"

	"github.com/switchboard-dev/switchboard/app/broker"
	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
)

// A resume is tried at every size around the limits: SEND_QUEUE (256, the
// old real window), HISTORY_SIZE (1,000: beyond it the catch-up reads
// Postgres) and RECOVERY_LIMIT (10,000, delivered whole). Every missed
// message arrives once and in order, with no history_gap, then the live ones
// sent during the catch-up; the connection stays open.
func TestResumeDeliversEveryMissedMessageAtEverySize(t *testing.T) {
	for _, missed := range []int{255, 256, 600, 1500, 10_000} {
		t.Run(fmt.Sprint(missed), func(t *testing.T) {
			r := chattest.Room()
			publish(t, r, missed)
			if missed > 1000 {
				waitStoredLong(t, r, missed)
			}
			reader := chattest.Raw(t, env.b.WSURL(), token(t, "reader", time.Hour))
			start := time.Now()
			resume(t, reader, r, 0, missed)
			publish(t, r, 5) // live, while the reader is still catching up
			assertStream(t, readFrames(t, reader, r, missed+5), 0, "", missed+5)
			t.Logf("resume of %d missed messages (+5 live) delivered in %s", missed, time.Since(start).Round(time.Millisecond))
		})
	}
}

// Past RECOVERY_LIMIT the oldest part is announced with its range and the
// newest RECOVERY_LIMIT messages are delivered; with SEND_QUEUE=4 the
// catch-up's pages still never count against the live queue.
func TestResumePastTheRecoveryLimitAnnouncesTheOldestPart(t *testing.T) {
	small := ownChat(t, "chat-recovery-limit", "RECOVERY_LIMIT=1000", "SEND_QUEUE=4")
	r := chattest.Room()
	publish(t, r, 1500)
	waitStoredLong(t, r, 1500)
	reader := chattest.Raw(t, small.WSURL(), token(t, "reader", time.Hour))
	resume(t, reader, r, 0, 1500)
	assertStream(t, readFrames(t, reader, r, 1001), 0, "gap 1-500", 1500)
	if v := chattest.Metric(t, small.URL(), "chat_slow_consumers_total"); v != 0 {
		t.Fatalf("chat_slow_consumers_total = %v after a resume, want 0", v)
	}
}

var publishes atomic.Int64

// A Postgres outage during a resume is not a gap: the catch-up retries,
// and if it gives up the connection is closed with 1011 and the client
// resumes from the last message it got. Once Postgres is back every message
// arrives, once, in order, with no history_gap.
func TestResumeDuringAPostgresOutageIsRetriedNotAGap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := startOwnStack(ctx, t, "chat-pg-outage", "HISTORY_SIZE=10", "RATE_LIMIT=10000", "RATE_BURST=10000")
	redis, pg, c := st.redis, st.pg, st.chat

	// 30 messages: Redis keeps 21..30, Postgres alone has 1..20.
	r := chattest.Room()
	publishTo(t, redis.URL(), broker.Options{HistorySize: 10}, r, 30)
	retry.DoWithRetry(t, "30 rows in postgres", 120, 250*time.Millisecond, func() (string, error) {
		if v := chattest.Metric(t, c.URL(), "chat_messages_persisted_total"); v != 30 {
			return "", fmt.Errorf("%v of 30 persisted", v)
		}
		return "ok", nil
	})
	if err := pg.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	conn := chattest.Raw(t, c.WSURL(), token(t, "reader", time.Hour))
	var after int64
	if err := conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: r, Since: &after}); err != nil {
		t.Fatal(err)
	}
	retry.DoWithRetry(t, "a failed history read", 80, 250*time.Millisecond, func() (string, error) {
		if v := chattest.Metric(t, c.URL(), `chat_postgres_errors_total{op="history"`); v == 0 {
			return "", errors.New("no postgres history error yet")
		}
		return "ok", nil
	})
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var got []protocol.ServerFrame
	closes := 0
	for after < 30 {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var f protocol.ServerFrame
		err := conn.ReadJSON(&f)
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce) && ce.Code == protocol.CloseInternal && closes < 10:
			// The catch-up gave up before Postgres was back: resume.
			closes++
			conn = chattest.Raw(t, c.WSURL(), token(t, "reader", time.Hour))
			if err := conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: r, Since: &after}); err != nil {
				t.Fatal(err)
			}
		case err != nil:
			t.Fatalf("after seq %d: %v", after, err)
		case f.Op == protocol.OpJoined:
		default:
			got = append(got, f)
			if f.Op == protocol.OpMessage {
				after = f.Seq
			}
		}
	}
	assertStream(t, got, 0, "", 30)
	t.Logf("resume through a postgres outage: %d close(s) with 1011 before postgres was back", closes)
}

// publish accepts n messages in room through the shared Redis, as chat
// instances do, eight at a time.
func publish(t *testing.T, room string, n int) {
	t.Helper()
	publishTo(t, env.redis.URL(), broker.Options{}, room, n)
}

// publishTo publishes through the Redis at redisURL with the instances'
// broker options (HISTORY_SIZE).
func publishTo(t *testing.T, redisURL string, opts broker.Options, room string, n int) {
	t.Helper()
	b, err := broker.Connect(redisURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	batch := publishes.Add(1) // ids unique per call, or the sends would be deduplicated
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := b.Publish(context.Background(), room, "sender", fmt.Sprint("m", i), fmt.Sprintf("p%d-%d", batch, i), time.Now()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish to %s: %v", room, err)
	}
}

// waitStoredLong waits for n rows: a large batch takes the persist writers
// longer than waitStored allows.
func waitStoredLong(t *testing.T, room string, n int) {
	t.Helper()
	retry.DoWithRetry(t, "rows of "+room+" in postgres", 240, 250*time.Millisecond, func() (string, error) {
		if got := len(storedSeqs(t, room)); got != n {
			return "", fmt.Errorf("%d of %d rows", got, n)
		}
		return "ok", nil
	})
}

// resume joins room on conn asking for every message after `after`, and
// checks the joined frame: first, at latest, with the room's epoch.
func resume(t *testing.T, conn *websocket.Conn, room string, after int64, latest int) {
	t.Helper()
	if err := conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: &after}); err != nil {
		t.Fatal(err)
	}
	f := chattest.Next(t, conn)
	b, err := broker.Connect(env.redis.URL(), broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	at, err := b.Latest(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	if f.Op != protocol.OpJoined || f.Seq != int64(latest) || f.Epoch != at.Epoch {
		t.Fatalf("first frame after the join %+v, want joined at seq %d with epoch %q", f, latest, at.Epoch)
	}
}

// readFrames reads n frames of room.
func readFrames(t *testing.T, conn *websocket.Conn, room string, n int) []protocol.ServerFrame {
	t.Helper()
	out := make([]protocol.ServerFrame, 0, n)
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for len(out) < n {
		var f protocol.ServerFrame
		if err := conn.ReadJSON(&f); err != nil {
			t.Fatalf("after %d of %d frames: %v", len(out), n, err)
		}
		if f.Room != room {
			t.Fatalf("frame of another room: %+v", f)
		}
		out = append(out, f)
	}
	return out
}

// assertStream checks frames against "gap (if any), then every seq up to
// last", strictly increasing, nothing else.
func assertStream(t *testing.T, frames []protocol.ServerFrame, after int64, gap string, last int) {
	t.Helper()
	next := after + 1
	for i, f := range frames {
		switch {
		case f.Op == protocol.OpError && f.Code == protocol.CodeHistoryGap && i == 0 && gap != "":
			if got := fmt.Sprintf("gap %d-%d", f.From, f.To); got != gap || f.From != next {
				t.Fatalf("history_gap %s, want %s", got, gap)
			}
			next = f.To + 1
		case f.Op == protocol.OpMessage && f.Seq == next:
			next++
		default:
			t.Fatalf("frame %d is %+v, want message %d (a gap, a duplicate or out of order)", i, f, next)
		}
	}
	if next != int64(last)+1 {
		t.Fatalf("stream ends at %d, want %d", next-1, last)
	}
}

// A resume is told of a gap only for messages that are gone, in the two
// cases an earlier version announced as lost (HISTORY_SIZE=10): messages
// acked while Postgres was down and not stored yet when the client resumes
// (they are read from the persist backlog), and the seqs a reseed skipped
// after Redis restarted (no message had them; a resume far back is not cut
// by RECOVERY_LIMIT for them either).
func TestAResumeIsToldOfNoGapForMessagesThatExistOrNeverDid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := startOwnStack(ctx, t, "chat-no-false-gap", "HISTORY_SIZE=10", "RECOVERY_LIMIT=450", "RATE_LIMIT=10000", "RATE_BURST=10000")
	ledger, err := store.Open(ctx, st.pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer ledger.Close()
	opts := broker.Options{HistorySize: 10, Ledger: ledger}
	readAll := func(room string, since int64, want []int64) {
		t.Helper()
		conn := chattest.Raw(t, st.chat.WSURL(), token(t, "reader", time.Hour))
		if err := conn.WriteJSON(protocol.ClientFrame{Op: protocol.OpJoin, Room: room, Since: &since}); err != nil {
			t.Fatal(err)
		}
		frames := readFrames(t, conn, room, len(want)+1)
		for i, f := range frames[1:] {
			if f.Op != protocol.OpMessage || f.Seq != want[i] {
				t.Fatalf("frame %d after the joined frame is %+v, want message %d", i, f, want[i])
			}
		}
	}
	seqs := func(from, to int64) []int64 {
		var s []int64
		for i := from; i <= to; i++ {
			s = append(s, i)
		}
		return s
	}

	// Postgres last: its restart leaves the ledger's pooled connections dead.
	t.Run("skipped by a reseed after a Redis restart", func(t *testing.T) {
		r := chattest.Room()
		publishTo(t, st.redis.URL(), opts, r, 300)
		if err := st.redis.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		publishTo(t, st.redis.URL(), opts, r, 200)
		b, err := broker.Connect(st.redis.URL(), broker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		at, err := b.Latest(ctx, r)
		if err != nil || at.Seq < 10_000 {
			t.Fatalf("latest after the restart %+v, %v: want a reseed's jump", at, err)
		}
		readAll(r, 100, append(seqs(101, 300), seqs(at.Seq-199, at.Seq)...))
	})
	t.Run("acked while Postgres was down", func(t *testing.T) {
		r := chattest.Room()
		publishTo(t, st.redis.URL(), opts, r, 1) // the room's seqs are reserved
		if err := st.pg.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		publishTo(t, st.redis.URL(), opts, r, 50)
		if err := st.pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		readAll(r, 0, seqs(1, 51))
	})
}
