package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

const lobby = "lobby"

func since(n int64) *int64 { return &n }

func join(t *testing.T, w *world, m *member, room string, after *int64) protocol.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	at, err := w.h.Join(ctx, m, room, after)
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	return at
}

// Every branch of a resume's catch-up: Redis, Postgres below it, what
// neither holds, the recovery limit, pages of every size.
func TestResumeCatchesUpEveryMissedMessageOrAnnouncesTheRange(t *testing.T) {
	type span struct{ from, to int64 }
	cases := []struct {
		name    string
		opts    Options
		keep    int // Redis's log
		write   int
		unstore []span
		since   int64
		want    string
	}{
		{"from redis alone, in pages", Options{PageSize: 8}, 1000, 50, nil, 10, run(11, 50)},
		{"from postgres below what redis keeps", Options{PageSize: 8}, 20, 60, nil, 5, run(6, 60)},
		{"a page size that divides nothing", Options{PageSize: 7}, 13, 100, nil, 0, run(1, 100)},
		{"a hole in postgres is announced in its place", Options{PageSize: 8}, 20, 60, []span{{10, 20}}, 0,
			run(1, 9) + gapText(10, 20) + run(21, 60)},
		{"holes inside one postgres page", Options{PageSize: 50}, 10, 60, []span{{3, 4}, {7, 7}}, 0,
			run(1, 2) + gapText(3, 4) + run(5, 6) + gapText(7, 7) + run(8, 60)},
		{"what is gone between postgres and redis", Options{PageSize: 8}, 20, 60, []span{{31, 40}}, 0,
			run(1, 30) + gapText(31, 40) + run(41, 60)},
		{"nothing below redis at all", Options{PageSize: 8}, 20, 60, []span{{1, 40}}, 0, gapText(1, 40) + run(41, 60)},
		{"past the recovery limit the oldest part is announced", Options{RecoveryLimit: 100, PageSize: 16}, 1000, 250, nil, 0,
			gapText(1, 150) + run(151, 250)},
		{"the limit counts the messages there are, not the missing ones", Options{RecoveryLimit: 100, PageSize: 16}, 50, 250, []span{{151, 160}}, 0,
			gapText(1, 140) + run(141, 150) + gapText(151, 160) + run(161, 250)},
		{"exactly the recovery limit is delivered whole", Options{RecoveryLimit: 100, PageSize: 16}, 30, 100, nil, 0, run(1, 100)},
		{"a since level with the room needs nothing", Options{}, 1000, 30, nil, 30, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, c.opts)
			w.keep = c.keep
			w.write(lobby, c.write)
			for _, s := range c.unstore {
				w.unstore(lobby, s.from, s.to)
			}
			m := newMember()
			at := join(t, w, m, lobby, since(c.since))
			if at != (protocol.Position{Seq: int64(c.write), Epoch: "e1"}) {
				t.Fatalf("joined at %+v, want seq %d epoch e1", at, c.write)
			}
			if c.since < int64(c.write) {
				m.awaitSeq(t, int64(c.write))
			}
			its := m.items(t)
			if its[0] != (item{op: "joined", seq: int64(c.write), epoch: "e1"}) {
				t.Fatalf("first frame %v, want the joined frame", its[0])
			}
			if got := stream(t, its, c.since); got != c.want {
				t.Fatalf("stream\n got %s\nwant %s", got, c.want)
			}
			gaps := 0
			for _, it := range its {
				if it.op == "gap" {
					gaps++
				}
			}
			if v := testutil.ToFloat64(w.h.m.HistoryGaps); v != float64(gaps) {
				t.Errorf("chat_history_gaps_total = %v, want %d", v, gaps)
			}
			for _, n := range m.pushed() {
				if n > w.h.opts.PageSize {
					t.Errorf("a catch-up page of %d messages, page size %d", n, w.h.opts.PageSize)
				}
			}
			// The member is live now: the next message follows at once.
			w.publish(lobby, 1)
			m.awaitSeq(t, int64(c.write+1))
		})
	}
}

// The catch-up waits for the member's writer before each page, so a slow
// client gets history at its own pace; live messages wait until history is
// done and follow it in order.
func TestCatchUpGoesAtTheMembersPaceAndLiveMessagesFollowIt(t *testing.T) {
	w := newWorld(t, Options{PageSize: 10})
	w.write(lobby, 50)
	m := newMember()
	m.hold()
	join(t, w, m, lobby, since(0))
	for page := 1; page <= 5; page++ {
		if err := <-m.waiting; err != nil {
			t.Fatal(err)
		}
		// Blocked in Drained: exactly the pages the writer took, plus one.
		if got := m.pushed(); len(got) != page || got[page-1] != 10 {
			t.Fatalf("pages pushed before the writer took page %d: %v", page, got)
		}
		if page == 2 {
			w.publish(lobby, 5) // live, during the catch-up
		}
		m.take()
	}
	m.release()
	m.awaitSeq(t, 55)
	if got := stream(t, m.items(t), 0); got != run(1, 55) {
		t.Fatalf("stream %s, want 1..55", got)
	}
}

// Live messages past PendingLimit are not held: the member is re-pointed at
// the log and reads them from history, still in order.
func TestLiveMessagesPastThePendingLimitAreReadFromTheLog(t *testing.T) {
	w := newWorld(t, Options{PageSize: 10, PendingLimit: 5})
	w.write(lobby, 30)
	m := newMember()
	m.hold()
	join(t, w, m, lobby, since(0))
	<-m.waiting
	w.publish(lobby, 20)
	m.release()
	m.awaitSeq(t, 50)
	if got := stream(t, m.items(t), 0); got != run(1, 50) {
		t.Fatalf("stream %s, want 1..50", got)
	}
	if m.closed != 0 {
		t.Fatalf("closed with %d", m.closed)
	}
}

// A member slower than the room by more than the recovery limit is a slow
// consumer: closed with 1013 (it resumes), never fed past a hole.
func TestAMemberFallingBehindByMoreThanTheLimitIsClosedAsSlow(t *testing.T) {
	w := newWorld(t, Options{PageSize: 5, PendingLimit: 5, RecoveryLimit: 20})
	w.write(lobby, 10)
	m := newMember()
	m.hold()
	join(t, w, m, lobby, since(0))
	<-m.waiting
	w.publish(lobby, 40)
	m.take()
	m.await(t, "close", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.closed != 0 })
	if m.closed != protocol.CloseTryAgainLate {
		t.Fatalf("closed with %d, want 1013", m.closed)
	}
	stream(t, m.items(t), 0) // no hole in what it got
	if w.h.Leave(m, lobby) {
		t.Fatal("the closed member is still in the room")
	}
	eventually(t, "unsubscribed", func() bool { return !w.subscribed(lobby) })
}

// A Redis or Postgres error during a resume is retried: the messages exist,
// so they are delivered, with no history_gap.
func TestTransientErrorsDuringResumeAreRetriedNotTakenForAGap(t *testing.T) {
	for _, store := range []string{"redis", "postgres"} {
		t.Run(store, func(t *testing.T) {
			w := newWorld(t, Options{PageSize: 8})
			w.keep = 20
			w.write(lobby, 60)
			w.fail(store, 3)
			m := newMember()
			join(t, w, m, lobby, since(0))
			m.awaitSeq(t, 60)
			if got := stream(t, m.items(t), 0); got != run(1, 60) {
				t.Fatalf("stream %s, want 1..60", got)
			}
			errs := w.h.m.RedisErrors
			if store == "postgres" {
				errs = w.h.m.PostgresErrors
			}
			if v := testutil.ToFloat64(errs.WithLabelValues(metrics.OpHistory)); v != 3 {
				t.Errorf("%s history errors = %v, want 3", store, v)
			}
		})
	}
}

// When history stays unavailable the member is closed with 1011 so that its
// client resumes later: nothing past the hole, no gap for what exists.
func TestHistoryThatStaysUnavailableClosesTheMemberWith1011(t *testing.T) {
	w := newWorld(t, Options{PageSize: 8, RetryFor: 20 * time.Millisecond})
	w.keep = 20
	w.write(lobby, 60)
	w.fail("postgres", -1)
	m := newMember()
	join(t, w, m, lobby, since(0))
	m.await(t, "close", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.closed != 0 })
	if m.closed != protocol.CloseInternal {
		t.Fatalf("closed with %d, want 1011", m.closed)
	}
	if its := m.items(t); len(its) != 1 {
		t.Fatalf("got %v, want the joined frame alone", its)
	}
	if w.h.Leave(m, lobby) {
		t.Fatal("the closed member is still in the room")
	}
}

// Messages pub/sub lost are read from history before the message that
// revealed the hole.
func TestAHoleInPubSubIsRepairedBeforeLaterMessages(t *testing.T) {
	w := newWorld(t, Options{})
	m := newMember()
	join(t, w, m, lobby, nil)
	w.publish(lobby, 5)
	w.write(lobby, 3) // lost on pub/sub
	w.publish(lobby, 1)
	m.awaitSeq(t, 9)
	if got := stream(t, m.items(t), 0); got != run(1, 9) {
		t.Fatalf("stream %s, want 1..9", got)
	}
}

// A repair that fails never forwards what follows the hole: it retries, and
// the later messages wait until the hole is filled.
func TestAFailingRepairNeverForwardsPastTheHole(t *testing.T) {
	w := newWorld(t, Options{})
	m := newMember()
	join(t, w, m, lobby, nil)
	w.publish(lobby, 5)
	w.fail("redis", -1)
	w.write(lobby, 3)
	w.publish(lobby, 2)
	eventually(t, "three failed repairs", func() bool { return w.count("redis") >= 3 })
	if last := m.last(t); last != 5 {
		t.Fatalf("member got up to %d while the hole after 5 was not filled", last)
	}
	w.fail("redis", 0)
	m.awaitSeq(t, 10)
	if got := stream(t, m.items(t), 0); got != run(1, 10) {
		t.Fatalf("stream %s, want 1..10", got)
	}
	if v := testutil.ToFloat64(w.h.m.RedisErrors.WithLabelValues(metrics.OpRepair)); v < 3 {
		t.Errorf("redis repair errors = %v, want >= 3", v)
	}
}

// Redis lost the room: its counter was reseeded above everything stored,
// with a new epoch. Live members pass over the seqs the reseed skipped, with
// no gap (no message had them), and joins get the new epoch.
func TestWhatARoomsReseedSkippedIsPassedOverAndTheNewEpochTakesOver(t *testing.T) {
	w := newWorld(t, Options{})
	m := newMember()
	join(t, w, m, lobby, nil)
	w.publish(lobby, 5)
	w.reseed(lobby, 100, "e2")
	w.publish(lobby, 1)
	m.awaitSeq(t, 106)
	if got, want := stream(t, m.items(t), 0, 105), run(1, 5)+skipText(6, 105)+"106 "; got != want {
		t.Fatalf("stream %s, want %s", got, want)
	}
	if v := testutil.ToFloat64(w.h.m.HistoryGaps); v != 0 {
		t.Errorf("chat_history_gaps_total = %v for skipped seqs, want 0", v)
	}
	eventually(t, "the new epoch read", func() bool {
		r := w.h.lookup(lobby)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.epoch == "e2"
	})
	late := newMember()
	if at := join(t, w, late, lobby, nil); at != (protocol.Position{Seq: 106, Epoch: "e2"}) {
		t.Fatalf("joined at %+v, want 106 e2", at)
	}
}

// A resume across reseeds gets every message and no gap: not for the seqs
// the reseeds skipped, and not for messages still on their way to Postgres;
// what is truly gone (in no store, no backlog) is still announced, and so is
// the part of it above a floor.
func TestAResumeAcrossReseedsAndTheBacklogAnnouncesOnlyWhatIsGone(t *testing.T) {
	cases := []struct {
		name  string
		build func(w *world)
		since int64
		skips []int64
		want  string
	}{
		{"seqs skipped by a reseed", func(w *world) {
			w.write(lobby, 60)
			w.reseed(lobby, 100, "e2")
			w.write(lobby, 40)
		}, 0, []int64{160}, run(1, 60) + skipText(61, 160) + run(161, 200)},
		{"two reseeds, one right after the other", func(w *world) {
			w.write(lobby, 20)
			w.reseed(lobby, 50, "e2")
			w.reseed(lobby, 50, "e3")
			w.write(lobby, 10)
		}, 10, []int64{70, 120}, run(11, 20) + skipText(21, 120) + run(121, 130)},
		{"messages acked while Postgres was down, not stored yet", func(w *world) {
			w.write(lobby, 50)
			w.queue(lobby, 4, 43)
		}, 0, nil, run(1, 50)},
		{"part queued, part lost: only the lost part is announced", func(w *world) {
			w.write(lobby, 50)
			w.queue(lobby, 4, 20)
			w.unstore(lobby, 21, 25)
		}, 0, nil, run(1, 20) + gapText(21, 25) + run(26, 50)},
		{"lost at the start of a new epoch: announced above its floor", func(w *world) {
			w.write(lobby, 30)
			w.reseed(lobby, 100, "e2")
			w.write(lobby, 40)
			w.unstore(lobby, 131, 135)
		}, 0, []int64{130}, run(1, 30) + skipText(31, 130) + gapText(131, 135) + run(136, 170)},
		{"a since inside the skipped seqs", func(w *world) {
			w.write(lobby, 30)
			w.reseed(lobby, 100, "e2")
			w.write(lobby, 20)
		}, 30, []int64{130}, skipText(31, 130) + run(131, 150)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, Options{PageSize: 8})
			w.keep = 10
			c.build(w)
			m := newMember()
			at := join(t, w, m, lobby, since(c.since))
			m.awaitSeq(t, at.Seq)
			if got := stream(t, m.items(t), c.since, c.skips...); got != c.want {
				t.Fatalf("stream\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// Messages no store holds are announced only once they stay missing for
// LossGrace: a persist writer that read them from a Redis that lost them
// since may still be waiting for Postgres to take its insert, and a row
// that appears meanwhile is delivered, not announced as lost.
func TestALossIsAnnouncedOnlyAfterItsGrace(t *testing.T) {
	w := newWorld(t, Options{LossGrace: time.Minute, PageSize: 8})
	w.keep = 10
	w.write(lobby, 30)
	release := w.hold(lobby, 10, 20)
	m := newMember()
	join(t, w, m, lobby, since(0))
	eventually(t, "the lost range read again", func() bool { return w.count("postgres") >= 6 })
	if last := m.last(t); last != 8 {
		t.Fatalf("the member got up to %d during the grace, want 8 (the page before the loss)", last)
	}
	release()
	m.awaitSeq(t, 30)
	if got := stream(t, m.items(t), 0); got != run(1, 30) {
		t.Fatalf("stream %s, want 1..30 with no gap", got)
	}
}

// The end of an epoch just before a fresh floor is passed over only once
// the floor is LossGrace old: a writer may still hold its last messages,
// read from the Redis lost since. One that arrives meanwhile is delivered.
func TestTheEndOfAnEpochWaitsForAFreshFloorsGrace(t *testing.T) {
	w := newWorld(t, Options{LossGrace: 2 * time.Second, PageSize: 8})
	w.keep = 5
	w.write(lobby, 30)
	release := w.hold(lobby, 30, 30)
	w.reseed(lobby, 100, "e2")
	w.write(lobby, 5)
	m := newMember()
	join(t, w, m, lobby, since(20))
	m.awaitSeq(t, 28) // the page before the one that ends at the floor
	before := w.count("postgres")
	eventually(t, "the hole before the floor read again", func() bool { return w.count("postgres") >= before+4 })
	release()
	m.awaitSeq(t, 135)
	if got, want := stream(t, m.items(t), 20, 130), run(21, 30)+skipText(31, 130)+run(131, 135); got != want {
		t.Fatalf("stream\n got %s\nwant %s", got, want)
	}
}

// RECOVERY_LIMIT counts messages: a reseed's jump of thousands of seqs does
// not make a short catch-up look long.
func TestTheRecoveryLimitCountsMessagesNotSeqs(t *testing.T) {
	w := newWorld(t, Options{RecoveryLimit: 300, PageSize: 50})
	w.keep = 10
	w.write(lobby, 300)
	w.reseed(lobby, 10_000, "e2")
	w.write(lobby, 100)
	m := newMember()
	at := join(t, w, m, lobby, since(100))
	m.awaitSeq(t, at.Seq)
	if got, want := stream(t, m.items(t), 100, 10_300), run(101, 300)+skipText(301, 10_300)+run(10_301, 10_400); got != want {
		t.Fatalf("stream\n got %s\nwant %s", got, want)
	}
	// Past the limit in messages, the oldest part is still announced.
	late := newMember()
	at = join(t, w, late, lobby, since(0))
	late.awaitSeq(t, at.Seq)
	if got, want := stream(t, late.items(t), 0, 10_300), gapText(1, 100)+run(101, 300)+skipText(301, 10_300)+run(10_301, 10_400); got != want {
		t.Fatalf("stream\n got %s\nwant %s", got, want)
	}
}

// A since above the room's latest on this instance is trusted whatever its
// epoch: messages still on their way here, or a room Redis lost, whose next
// seqs are above every seq it had. Nothing at or below since comes again.
func TestASinceAheadOfTheInstanceIsTrusted(t *testing.T) {
	w := newWorld(t, Options{})
	w.write(lobby, 10)
	m := newMember()
	join(t, w, m, lobby, since(12))
	w.publish(lobby, 3)
	m.awaitSeq(t, 13)
	if got := stream(t, m.items(t), 12); got != "13 " {
		t.Errorf("stream %s, want 13 alone", got)
	}
}

// After a pub/sub reconnect the room's position is re-read, so what was
// published meanwhile arrives even if nothing follows it.
func TestAPubSubReconnectCatchesUpWhatWasPublishedMeanwhile(t *testing.T) {
	w := newWorld(t, Options{})
	m := newMember()
	join(t, w, m, lobby, nil)
	w.publish(lobby, 3)
	w.mu.Lock()
	w.live = map[string]bool{} // the connection is down
	w.mu.Unlock()
	w.publish(lobby, 4)
	w.reconnect()
	m.awaitSeq(t, 7)
	if got := stream(t, m.items(t), 0); got != run(1, 7) {
		t.Fatalf("stream %s, want 1..7", got)
	}
}

// The pub/sub reader never waits on Redis: while every room's position read
// is held, confirmations return and messages of every room are forwarded,
// and the rooms' reads run side by side, not one after the other.
func TestThePubSubReaderNeverWaitsOnRedis(t *testing.T) {
	w := newWorld(t, Options{})
	rooms := []string{"a", "b", "c"}
	members := map[string]*member{}
	for _, r := range rooms {
		members[r] = newMember()
		join(t, w, members[r], r, nil)
	}
	w.mu.Lock()
	w.latGate = newGate()
	w.mu.Unlock()
	for _, r := range rooms {
		w.h.Subscribed(r) // as the reader does after a reconnect: returns at once
	}
	held := map[string]bool{}
	for range rooms {
		held[<-w.latGate.entered] = true
	}
	if len(held) != len(rooms) {
		t.Fatalf("position reads held at once: %v, want one per room", held)
	}
	w.publish("b", 1)
	members["b"].awaitSeq(t, 1)
	for range rooms {
		w.latGate.open <- struct{}{}
	}
}

// A leave racing a join, forced in both orders at the bus: whatever order
// subscribe and unsubscribe would reach Redis in, the room ends subscribed
// exactly when it has members, in go-redis's resubscription set too.
func TestLeaveAndJoinRacingLeaveTheSubscriptionMatchingTheMembership(t *testing.T) {
	t.Run("the unsubscribe is in flight when a join comes", func(t *testing.T) {
		w := newWorld(t, Options{})
		first, second := newMember(), newMember()
		join(t, w, first, lobby, nil)
		w.mu.Lock()
		w.remGate = newGate()
		w.mu.Unlock()
		w.h.Leave(first, lobby)
		<-w.remGate.entered
		joined := make(chan protocol.Position)
		go func() { joined <- join(t, w, second, lobby, nil) }()
		eventually(t, "the join waiting", func() bool {
			w.h.mu.Lock()
			defer w.h.mu.Unlock()
			return w.h.rooms[lobby].refs == 1
		})
		w.remGate.open <- struct{}{}
		<-joined
		assertServes(t, w, second)
		if want := []string{"add lobby", "remove lobby", "add lobby"}; !slices.Equal(w.calls(), want) {
			t.Fatalf("bus calls %v, want %v", w.calls(), want)
		}
	})
	t.Run("the subscribe is in flight when the last member leaves", func(t *testing.T) {
		w := newWorld(t, Options{})
		w.mu.Lock()
		w.addGate = newGate()
		w.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan error)
		go func() {
			_, err := w.h.Join(ctx, newMember(), lobby, nil)
			gaveUp <- err
		}()
		<-w.addGate.entered
		cancel()
		if err := <-gaveUp; err == nil {
			t.Fatal("a join cancelled while subscribing succeeded")
		}
		w.addGate.open <- struct{}{}
		eventually(t, "the room forgotten", func() bool { return w.h.lookup(lobby) == nil })
		if w.subscribed(lobby) {
			t.Fatal("subscribed with no member")
		}
		if want := []string{"add lobby", "remove lobby"}; !slices.Equal(w.calls(), want) {
			t.Fatalf("bus calls %v, want %v", w.calls(), want)
		}
		// A join after all that subscribes again.
		w.mu.Lock()
		w.addGate = nil
		w.mu.Unlock()
		m := newMember()
		join(t, w, m, lobby, nil)
		assertServes(t, w, m)
	})
	t.Run("a join comes while the subscribe of a join that gave up is in flight", func(t *testing.T) {
		w := newWorld(t, Options{})
		w.mu.Lock()
		w.addGate = newGate()
		w.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan error)
		go func() {
			_, err := w.h.Join(ctx, newMember(), lobby, nil)
			gaveUp <- err
		}()
		<-w.addGate.entered
		cancel()
		<-gaveUp
		m := newMember()
		joined := make(chan protocol.Position)
		go func() { joined <- join(t, w, m, lobby, nil) }()
		eventually(t, "the join waiting", func() bool {
			w.h.mu.Lock()
			defer w.h.mu.Unlock()
			return w.h.rooms[lobby].refs == 1
		})
		w.addGate.open <- struct{}{}
		<-joined
		assertServes(t, w, m)
	})
}

// Random joins, leaves and pub/sub reconnects on one room, with the race
// detector on: once it settles the subscription matches the membership and
// every member gets the next message.
func TestRandomJoinsLeavesAndReconnectsSettleSubscribedExactlyWhenThereAreMembers(t *testing.T) {
	for seed := range uint64(20) {
		w := newWorld(t, Options{})
		rnd := rand.New(rand.NewPCG(seed, 14))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var stay []*member
		for g := range 6 {
			wg.Add(1)
			steps := 5 + rnd.IntN(20)
			keep := g%2 == 0 && rnd.IntN(2) == 0
			go func() {
				defer wg.Done()
				m := newMember()
				for i := range steps {
					if _, err := w.h.Join(context.Background(), m, lobby, nil); err != nil {
						t.Errorf("join: %v", err)
						return
					}
					if i == steps-1 && keep {
						mu.Lock()
						stay = append(stay, m)
						mu.Unlock()
						return
					}
					w.h.Leave(m, lobby)
				}
			}()
		}
		for range 3 {
			w.reconnect()
		}
		wg.Wait()
		if len(stay) == 0 {
			eventually(t, fmt.Sprintf("seed %d: unsubscribed without members", seed), func() bool {
				return !w.subscribed(lobby) && w.h.lookup(lobby) == nil
			})
			continue
		}
		eventually(t, fmt.Sprintf("seed %d: subscribed with %d members", seed, len(stay)), func() bool { return w.subscribed(lobby) })
		w.publish(lobby, 1)
		for _, m := range stay {
			m.await(t, "the message", func() bool {
				its := m.items(t)
				return its[len(its)-1].op == "message"
			})
		}
	}
}

// A member that leaves during its catch-up gets nothing more.
func TestLeavingDuringACatchUpStopsIt(t *testing.T) {
	w := newWorld(t, Options{PageSize: 10})
	w.write(lobby, 50)
	m := newMember()
	m.hold()
	join(t, w, m, lobby, since(0))
	<-m.waiting
	w.h.Leave(m, lobby)
	if err := <-m.waiting; err == nil {
		t.Fatal("the catch-up went on waiting after the leave")
	}
	if got := m.pushed(); len(got) != 1 {
		t.Fatalf("pages pushed %v, want the one before the leave", got)
	}
	eventually(t, "unsubscribed", func() bool { return !w.subscribed(lobby) })
}

// assertServes checks that the room is subscribed, also after a reconnect,
// and that m gets the next message.
func assertServes(t *testing.T, w *world, m *member) {
	t.Helper()
	if !w.subscribed(lobby) {
		t.Fatal("the room has a member but is not subscribed")
	}
	w.reconnect()
	eventually(t, "resubscribed after a reconnect", func() bool { return w.subscribed(lobby) })
	w.publish(lobby, 1)
	m.await(t, "a message", func() bool {
		its := m.items(t)
		return its[len(its)-1].op == "message"
	})
}

func (w *world) calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.adds...)
}

// TestAMembershipWithoutCatchUpStaysSmall: every member of every room holds
// a membership; its recovery state is made by its first catch-up only, so
// a member that never misses a message holds 32 bytes (a size class of the
// runtime's: runtime/sizeclasses.go), not 96.
func TestAMembershipWithoutCatchUpStaysSmall(t *testing.T) {
	if size := unsafe.Sizeof(membership{}); size > 32 {
		t.Errorf("a membership is %d bytes, want 32 at most: every idle connection in a room pays it", size)
	}
}
