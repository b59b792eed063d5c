package quota

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/chattest"
)

// Two instances sharing a quota admit no more than its Count plus what they
// admit before a sync tells them it is spent; a refusal says when the window
// ends, and the next window admits again.
func TestRateAcrossInstances(t *testing.T) {
	r := startRedis(t)
	const (
		n        = 200
		per      = 3 * time.Second
		every    = 20 * time.Millisecond
		attempts = 300 // per instance, more than n alone
		pace     = 2 * time.Millisecond
	)
	rate := Rate{Count: n, Per: per}
	a := New(r.client(), Options{Instance: "a", SyncEvery: every})
	b := New(r.client(), Options{Instance: "b", SyncEvery: every})
	run(t, a)
	run(t, b)

	start := freshWindow(per, 2500*time.Millisecond)
	end := time.Unix(0, (start.UnixNano()/int64(per)+1)*int64(per))
	var admitted, refused [2]int
	var wg sync.WaitGroup
	for i, l := range []*Limiter{a, b} {
		wg.Go(func() {
			for range attempts {
				now := time.Now()
				ok, after := l.Allow("user_sends", "alice", rate, now)
				if ok {
					admitted[i]++
				} else {
					refused[i]++
					if !now.Add(after).Equal(end) {
						t.Errorf("refused at %s: retry after %s, want the window's end %s", now, after, end)
					}
				}
				time.Sleep(pace)
			}
		})
	}
	wg.Wait()
	if time.Now().After(end) {
		t.Fatal("the test outlived its window: too slow a machine")
	}
	// Each paces at most one per 2ms: one 20ms sync interval is 10 each; a
	// slack of 4 intervals for late syncs under -race. Without syncs each
	// would admit n alone.
	total, bound := admitted[0]+admitted[1], n+2*4*int(every/pace)
	t.Logf("admitted %v (%d), refused %v; quota %d, bound %d", admitted, total, refused, n, bound)
	if total < n || total > bound {
		t.Fatalf("admitted %d, want %d to %d", total, n, bound)
	}
	if refused[0] == 0 || refused[1] == 0 {
		t.Fatalf("refused %v: each instance should have refused", refused)
	}

	time.Sleep(time.Until(end))
	for _, l := range []*Limiter{a, b} {
		if ok, after := l.Allow("user_sends", "alice", rate, time.Now()); !ok {
			t.Fatalf("%s refused in the next window (retry after %s)", l.Incarnation(), after)
		}
	}
}

// The zero Rate (or any without a count or window) never refuses and never
// touches Redis.
func TestZeroRateNeverRefuses(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	l := New(c, Options{})
	for _, rate := range []Rate{{}, {Count: 0, Per: time.Minute}, {Count: 5, Per: 0}, {Count: -1, Per: time.Second}} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			for i := range 10_000 {
				if ok, after := l.Allow("user_sends", "alice", rate, time.Now()); !ok || after != 0 {
					t.Fatalf("call %d: ok %v, retry after %s", i, ok, after)
				}
			}
		})
	}
	l.sync(t.Context())
	if n := c.DBSize(t.Context()).Val(); n != 0 {
		t.Fatalf("%d keys in Redis, want none", n)
	}
}

// Allow answers from memory while Redis is down, still counting locally,
// and the counts reach Redis once it is back.
func TestAllowWhileRedisDown(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	var errs errCount
	l := New(c, Options{Instance: "a", SyncEvery: 20 * time.Millisecond, OnError: errs.add})
	run(t, l)
	per := time.Hour
	rate := Rate{Count: 1000, Per: per}
	now := freshWindow(per, 30*time.Second)
	key := rateKey(entryKey{name: "user_sends", key: "alice", win: now.UnixNano() / int64(per)})

	for range 10 {
		l.Allow("user_sends", "alice", rate, time.Now())
	}
	counted := func() int64 { v, _ := c.HGet(t.Context(), key, l.Incarnation()).Int64(); return v }
	chattest.Eventually(t, 5*time.Second, "the first counts in Redis", func() bool { return counted() == 10 })

	r.Kill()
	const down = 500
	var slowest, sum time.Duration
	for i := range down {
		t0 := time.Now()
		ok, _ := l.Allow("user_sends", "alice", rate, t0)
		d := time.Since(t0)
		sum += d
		slowest = max(slowest, d)
		if !ok {
			t.Fatalf("call %d refused under the quota", i)
		}
		if i%10 == 0 {
			time.Sleep(5 * time.Millisecond) // let syncs fail meanwhile
		}
	}
	chattest.Eventually(t, 5*time.Second, "a failed sync reported", func() bool { return errs.n.Load() > 0 })
	t.Logf("with Redis down: Allow took %s on average, %s at most; %d errors reported", sum/down, slowest, errs.n.Load())
	// Still counted here: the quota holds per instance meanwhile.
	l.Allow("user_sends", "alice", Rate{Count: 10 + down + 1, Per: per}, time.Now())
	if ok, _ := l.Allow("user_sends", "alice", Rate{Count: 10 + down + 1, Per: per}, time.Now()); ok {
		t.Fatal("admitted past the quota while Redis was down")
	}

	// A restart without its data lost the first 10: the next push writes
	// them again with what was admitted since, the whole of this
	// instance's count in the window.
	if err := r.Wipe(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var last int64
	defer func() {
		t.Logf("after the restart Redis counts %d; %d were admitted, %d while it was down", last, 10+down+1, down+1)
	}()
	chattest.Eventually(t, 30*time.Second, "the window's whole count pushed after Redis came back", func() bool {
		last = counted()
		return last == 10+down+1
	})
}

// Open refuses a user's and an address's connections past their limits
// across instances; release frees a slot once however often it is called.
func TestOpenLimits(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	a := New(r.client(), Options{Instance: "a"})
	b := New(r.client(), Options{Instance: "b"})
	run(t, a)
	run(t, b)
	const maxUser, maxAddr = 3, 5
	open := func(l *Limiter, user, addr string, maxU, maxA int, want string) func() {
		t.Helper()
		release, refused, err := l.Open(t.Context(), user, addr, maxU, maxA)
		if err != nil {
			t.Fatal(err)
		}
		if refused != want {
			t.Fatalf("open %s from %s on %s: refused %q, want %q", user, addr, l.Incarnation(), refused, want)
		}
		if release == nil {
			t.Fatal("nil release")
		}
		return release
	}

	// A user's limit, across instances.
	var alice []func()
	for _, l := range []*Limiter{a, b, a} {
		alice = append(alice, open(l, "alice", "10.0.0.1", maxUser, maxAddr, ""))
	}
	open(b, "alice", "10.0.0.9", maxUser, maxAddr, UserConnections)()
	alice[0]()
	alice[0] = open(b, "alice", "10.0.0.1", maxUser, maxAddr, "")
	alice[1]()
	alice[1]() // twice: frees one slot only
	alice[1] = open(a, "alice", "10.0.0.1", maxUser, maxAddr, "")
	open(a, "alice", "10.0.0.1", maxUser, maxAddr, UserConnections)

	// An address's limit, across instances.
	var shared []func()
	for i := range maxAddr {
		shared = append(shared, open([]*Limiter{a, b}[i%2], "user"+strconv.Itoa(i), "10.0.0.2", maxUser, maxAddr, ""))
	}
	open(a, "bob", "10.0.0.2", maxUser, maxAddr, AddressConnections)
	open(b, "alice", "10.0.0.2", maxUser, maxAddr, UserConnections) // the user's limit is checked first
	open(b, "bob", "10.0.0.2", 0, maxAddr, AddressConnections)      // 0: no limit per user
	open(b, "alice", "10.0.0.2", 0, 0, "")()                        // no limits: not counted
	shared[3]()
	shared[3] = open(a, "bob", "10.0.0.2", maxUser, maxAddr, "")

	for _, release := range append(alice, shared...) {
		release()
		release()
	}
	for _, key := range []string{userConnsKey("alice"), addrConnsKey("10.0.0.1"), addrConnsKey("10.0.0.2")} {
		if h := c.HGetAll(t.Context(), key).Val(); len(h) != 0 {
			t.Errorf("%s holds %v after every release", key, h)
		}
	}
}

// The connections of an instance that stopped heartbeating stop counting
// once Stale passes, and a restart under the same name does not revive
// them; a live instance's keep counting.
func TestCrashedInstanceStopsCounting(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	opts := Options{Instance: "a", Stale: 300 * time.Millisecond}
	a := New(r.client(), opts)
	stopA := run(t, a)
	b := New(r.client(), Options{Instance: "b", Stale: opts.Stale})
	run(t, b)
	ctx := t.Context()
	for range 2 {
		if _, refused, err := a.Open(ctx, "alice", "10.0.0.1", 2, 0); refused != "" || err != nil {
			t.Fatalf("open: refused %q, %v", refused, err)
		}
	}
	if _, refused, _ := b.Open(ctx, "alice", "10.0.0.1", 2, 0); refused != UserConnections {
		t.Fatalf("a live instance's connections do not count: refused %q", refused)
	}

	stopA() // crashed: no heartbeat, no release
	a2 := New(r.client(), opts)
	run(t, a2)
	if a2.Incarnation() == a.Incarnation() {
		t.Fatalf("restart kept incarnation %s", a.Incarnation())
	}
	var release func()
	chattest.Eventually(t, 5*time.Second, "a crashed instance's connections to stop counting", func() bool {
		rel, refused, err := b.Open(ctx, "alice", "10.0.0.1", 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		release = rel
		return refused == ""
	})
	defer release()
	if _, refused, _ := a2.Open(ctx, "alice", "10.0.0.1", 2, 0); refused != "" {
		t.Fatalf("second connection refused %q", refused)
	}
	// b's and a2's connections outlive Stale: they heartbeat.
	deadline := time.Now().Add(3 * opts.Stale)
	for time.Now().Before(deadline) {
		if _, refused, _ := b.Open(ctx, "alice", "10.0.0.1", 2, 0); refused != UserConnections {
			t.Fatalf("a live instance's connections stopped counting: refused %q", refused)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fields := c.HKeys(ctx, userConnsKey("alice")).Val()
	if strings.Contains(strings.Join(fields, " "), a.Incarnation()) || len(fields) != 2 {
		t.Fatalf("alice's connections are counted under %v, want only %s and %s", fields, b.Incarnation(), a2.Incarnation())
	}
}

// oddNames are user names (and addresses) that could collide or break keys
// if they went into them raw.
var oddNames = []string{
	"alice", "Alice", "alice ", " alice", "a:b", "a", "b", "a:b:1", "a%3Ab", ":", "_3A", "%3A",
	"{conns}", "}x{", "%41", "A", "#abc", "quota:user_sends:alice:1", "\xff\xfe",
	"é", "tab\there", "line\nbreak", "",
	strings.Repeat("x", 128), strings.Repeat("x", 129), strings.Repeat(":", 64),
	strings.Repeat("x", 10<<10), strings.Repeat("x", 10<<10-1) + "y", strings.Repeat("x", 10<<10+1),
}

func TestKeyPart(t *testing.T) {
	seen := map[string]string{}
	for _, name := range oddNames {
		p := keyPart(name)
		if len(p) > maxKeyPart+1 && len(p) != 65 {
			t.Errorf("%.20q: part of %d bytes", name, len(p))
		}
		if strings.ContainsAny(p, ":{} \t\n") {
			t.Errorf("%.20q: part %q holds a separator", name, p)
		}
		if other, ok := seen[p]; ok {
			t.Errorf("%.20q and %.20q share the part %q", name, other, p)
		}
		seen[p] = name
	}
}

// Odd user names and addresses count apart, in keys of bounded length.
func TestOddNames(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	l := New(c, Options{Instance: "a"})
	ctx := t.Context()
	per := time.Hour
	rate := Rate{Count: 1, Per: per}
	now := freshWindow(per, 30*time.Second)
	for _, name := range oddNames {
		if ok, _ := l.Allow("user_sends", name, rate, now); !ok {
			t.Fatalf("%.20q refused at once", name)
		}
	}
	l.sync(ctx)
	keys := c.Keys(ctx, "*").Val()
	if len(keys) != len(oddNames) {
		t.Fatalf("%d keys for %d names", len(keys), len(oddNames))
	}
	for _, k := range keys {
		if len(k) > 200 {
			t.Errorf("key of %d bytes: %.40q", len(k), k)
		}
		if v, _ := c.HGet(ctx, k, l.Incarnation()).Int(); v != 1 {
			t.Errorf("%.40q counts %d, want 1", k, v)
		}
	}

	// Connections: one per user and one per address each.
	for i, name := range oddNames {
		if _, refused, err := l.Open(ctx, name, "addr"+strconv.Itoa(i), 1, 0); refused != "" || err != nil {
			t.Fatalf("user %.20q: refused %q, %v", name, refused, err)
		}
		if _, refused, err := l.Open(ctx, "user"+strconv.Itoa(i), name, 0, 1); refused != "" || err != nil {
			t.Fatalf("address %.20q: refused %q, %v", name, refused, err)
		}
	}
	for _, name := range oddNames {
		if _, refused, _ := l.Open(ctx, name, "elsewhere", 1, 0); refused != UserConnections {
			t.Errorf("user %.20q: second connection refused %q", name, refused)
		}
		if _, refused, _ := l.Open(ctx, "someone", name, 0, 1); refused != AddressConnections {
			t.Errorf("address %.20q: second connection refused %q", name, refused)
		}
	}
}

// BenchmarkAllow is the hot path, parallel, while Run syncs with Redis every
// 100ms; "now" cases include the caller's time.Now, "fixed" ones not.
func BenchmarkAllow(b *testing.B) {
	r := startRedis(b)
	rate := Rate{Count: 1 << 40, Per: time.Minute}
	for _, n := range []int{1, 10_000} {
		for _, clock := range []string{"now", "fixed"} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, clock), func(b *testing.B) {
				l := New(r.client(), Options{OnError: func(err error) { b.Error(err) }})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { l.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				keys := make([]string, n)
				for i := range keys {
					keys[i] = "user-" + strconv.Itoa(i)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					now := time.Now()
					for i := 0; pb.Next(); i++ {
						if clock == "now" {
							now = time.Now()
						}
						if ok, _ := l.Allow("user_sends", keys[i%n], rate, now); !ok {
							b.Error("refused")
							return
						}
					}
				})
			})
		}
	}
}

// A sync visits the counters in use, not every one kept: a counter idle for
// refreshRecent syncs leaves the active lists, comes back on its next use
// and is pushed then; counters of ended windows are dropped by the sweep.
func TestSyncVisitsCountersInUse(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	l := New(c, Options{Instance: "a", OnError: func(err error) { t.Error(err) }})
	ctx := t.Context()
	counts := func() (kept, active int) {
		for i := range l.shards {
			s := &l.shards[i]
			s.mu.Lock()
			kept, active = kept+len(s.m), active+len(s.active)
			s.mu.Unlock()
		}
		return kept, active
	}
	hour := Rate{Count: 10, Per: time.Hour}
	now := freshWindow(hour.Per, 30*time.Second)
	const users = 1000
	for i := range users {
		l.Allow("user_sends", "user-"+strconv.Itoa(i), hour, now)
	}
	for range refreshRecent + 1 {
		l.sync(ctx)
	}
	if kept, active := counts(); kept != users || active != 0 {
		t.Fatalf("after %d idle syncs: %d counters kept, %d active; want %d kept, none active", refreshRecent+1, kept, active, users)
	}
	l.Allow("user_sends", "user-7", hour, now)
	l.sync(ctx)
	key := rateKey(entryKey{name: "user_sends", key: "user-7", win: now.UnixNano() / int64(hour.Per)})
	if v, err := sum(c.HVals(ctx, key)); v != 2 {
		t.Fatalf("user-7's counter reads %d (%v) after its second use, want 2", v, err)
	}

	short := Rate{Count: 10, Per: 200 * time.Millisecond}
	for i := range users {
		l.Allow("user_joins", "user-"+strconv.Itoa(i), short, time.Now())
	}
	time.Sleep(short.Per)
	for range sweepEvery {
		l.sync(ctx)
	}
	if kept, active := counts(); kept != users || active != 0 {
		t.Fatalf("%s after the short window ended: %d counters kept, %d active; want the hour's %d, none active", short.Per, kept, active, users)
	}
}

// A sync's commands serve every sync with new keys and counts: each
// counter learns its own window's total, pushed or read back, whichever
// counters a sync visits and in whatever order.
func TestEachSyncReadsEachCounterItsOwnTotal(t *testing.T) {
	r := startRedis(t)
	a := New(r.client(), Options{Instance: "a", OnError: func(err error) { t.Error(err) }})
	b := New(r.client(), Options{Instance: "b", OnError: func(err error) { t.Error(err) }})
	ctx := t.Context()
	hour := Rate{Count: 1000, Per: time.Hour}
	now := freshWindow(hour.Per, 30*time.Second)
	const users = 10
	user := func(i int) string { return "user-" + strconv.Itoa(i) }
	// b counts i+1 for user i, so that every total differs.
	for i := range users {
		for range i + 1 {
			b.Allow("user_sends", user(i), hour, now)
		}
	}
	b.sync(ctx)
	mine := map[string]int{}
	synced := func(name string) int32 { return counter(a, "user_sends", name, hour.Per, now).synced }
	// Each round a pushes a different run of users, from a different one,
	// and reads back those it used in the rounds before.
	for round := range 4 {
		for j := range 3 + round {
			name := user((3*round + j) % users)
			a.Allow("user_sends", name, hour, now)
			mine[name]++
		}
		a.sync(ctx)
		for name, n := range mine {
			i, _ := strconv.Atoi(strings.TrimPrefix(name, "user-"))
			if got, want := synced(name), int32(i+1+n); got != want {
				t.Errorf("round %d: %s's total read %d, want %d (b's %d and a's %d)", round, name, got, want, i+1, n)
			}
		}
	}
}

// Run spreads a sync over syncTurns turns: each turn pushes the counters of
// its own shards, a round of turns pushes every counter once and counts one
// generation, and the round reads back at most MaxRefresh idle counters,
// as one sync of every shard does.
func TestASyncInTurnsCoversEveryShardOnceARound(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	const users, maxRefresh = 400, 40
	l := New(c, Options{Instance: "a", MaxRefresh: maxRefresh, OnError: func(err error) { t.Error(err) }})
	ctx := t.Context()
	hour := Rate{Count: 10, Per: time.Hour}
	now := freshWindow(hour.Per, 30*time.Second)
	user := func(i int) string { return "user-" + strconv.Itoa(i) }
	turnOf := func(key string) int {
		s := l.shard(key)
		for i := range l.shards {
			if &l.shards[i] == s {
				return i % syncTurns
			}
		}
		t.Fatalf("%s: no shard", key)
		return 0
	}
	for i := range users {
		l.Allow("user_sends", user(i), hour, now)
	}
	gen := l.gen.Load()
	for turn := range syncTurns {
		l.syncTurn(ctx, turn, syncTurns)
		pushed := 0
		for i := range users {
			got, want := counter(l, "user_sends", user(i), hour.Per, now).pushed, int32(0)
			if turnOf(user(i)) <= turn {
				want = 1
			}
			if got != want {
				t.Fatalf("after turn %d: %s (its shard's turn %d) pushed %d, want %d", turn, user(i), turnOf(user(i)), got, want)
			}
			pushed += int(got)
		}
		if turn == 0 && pushed == users {
			t.Fatalf("turn 0 pushed all %d counters: the turns do not share the shards", users)
		}
	}
	if got := l.gen.Load(); got != gen+1 {
		t.Fatalf("a round of %d turns counted %d generations, want 1", syncTurns, got-gen)
	}
	// Every counter is idle, recent and not spent: the next round reads
	// back at most MaxRefresh of them, a turns-th in each turn.
	if reads := readBacks(t, c, func() {
		for turn := range syncTurns {
			l.syncTurn(ctx, turn, syncTurns)
		}
	}); reads == 0 || reads > maxRefresh {
		t.Fatalf("a round read back %d idle counters, want 1 to MaxRefresh (%d)", reads, maxRefresh)
	}
}

// A counter with nothing to push is read back once every refreshEvery
// rounds, and each round reads a part of them, not all at once.
func TestAnIdleCounterIsReadBackOnceEveryRefreshEveryRounds(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	const users = 400
	l := New(c, Options{Instance: "a", MaxRefresh: users, OnError: func(err error) { t.Error(err) }})
	ctx := t.Context()
	hour := Rate{Count: 10, Per: time.Hour}
	now := freshWindow(hour.Per, 30*time.Second)
	for i := range users {
		l.Allow("user_sends", "user-"+strconv.Itoa(i), hour, now)
	}
	l.sync(ctx) // pushes every counter: idle from here on
	total := 0
	for round := range refreshEvery {
		reads := readBacks(t, c, func() {
			for turn := range syncTurns {
				l.syncTurn(ctx, turn, syncTurns)
			}
		})
		if reads == 0 || reads >= users {
			t.Fatalf("round %d read back %d of %d idle counters, want a part of them", round, reads, users)
		}
		total += reads
	}
	if total != users {
		t.Fatalf("%d rounds read back %d idle counters, want each of the %d once", refreshEvery, total, users)
	}
}

// readBacks is how many counters Redis was asked to read back (HVALS)
// while sync ran.
func readBacks(t *testing.T, c *redis.Client, sync func()) int {
	t.Helper()
	ctx := t.Context()
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	sync()
	stats := c.Info(ctx, "commandstats").Val()
	reads := 0
	if _, rest, ok := strings.Cut(stats, "cmdstat_hvals:calls="); ok {
		reads, _ = strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
	}
	return reads
}

// A sync after a burst of new counters keeps at most keptCmds commands of
// each kind for the next sync.
func TestASyncAfterABurstKeepsBoundedCommands(t *testing.T) {
	r := startRedis(t)
	l := New(r.client(), Options{OnError: func(err error) { t.Error(err) }})
	minute := Rate{Count: 10, Per: time.Minute}
	now := freshWindow(minute.Per, 20*time.Second)
	const burst = 3 * keptCmds
	for i := range burst {
		l.Allow("address_connects", "10.1."+strconv.Itoa(i), minute, now)
	}
	l.sync(t.Context())
	if len(l.sets) > keptCmds || len(l.reads) > keptCmds {
		t.Fatalf("after a sync of %d pushes: %d HSETs and %d HVALS kept, want at most %d each", burst, len(l.sets), len(l.reads), keptCmds)
	}
	l.Allow("address_connects", "10.1.7", minute, now)
	l.sync(t.Context())
	if got := counter(l, "address_connects", "10.1.7", minute.Per, now).synced; got != 2 {
		t.Fatalf("10.1.7's total after its second use: %d, want 2", got)
	}
}

// BenchmarkSync is one sync while 30,000 counters of the last minute's
// connects sit idle and users send: "pushes", the same 150 users at every
// sync; "read-backs", 1,000 users 150 at a time in turn, as the pinned run
// of 1000 rooms × 10 at 1,500 msg/s sends, so that most counters in use
// have nothing to push and are read back.
func BenchmarkSync(b *testing.B) {
	for _, c := range []struct {
		name  string
		users int
	}{{"pushes", 150}, {"read-backs", 1000}} {
		b.Run(c.name, func(b *testing.B) {
			r := startRedis(b)
			l := New(r.client(), Options{OnError: func(err error) { b.Error(err) }})
			minute := Rate{Count: 1 << 40, Per: time.Minute}
			now := freshWindow(minute.Per, 20*time.Second)
			for i := range 30_000 {
				l.Allow("address_connects", "10.0."+strconv.Itoa(i), minute, now)
			}
			users := make([]string, c.users)
			for i := range users {
				users[i] = "user-" + strconv.Itoa(i)
			}
			for range refreshRecent + 1 {
				l.sync(b.Context())
			}
			next := 0
			b.ReportAllocs()
			for b.Loop() {
				for range 150 {
					l.Allow("user_sends", users[next], minute, now)
					next = (next + 1) % len(users)
				}
				l.sync(b.Context())
			}
		})
	}
}

// A counter idle for refreshRecent syncs drops its Redis key (an idle
// connection's windows are most of what its quotas hold), and counts on in
// the same key once it is used again.
func TestIdleCounterDropsItsKey(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	l := New(c, Options{Instance: "a"})
	ctx := t.Context()
	per := time.Hour
	rate := Rate{Count: 10, Per: per}
	now := freshWindow(per, 30*time.Second)
	key := func() string {
		k, _ := counter(l, "user_joins", "alice", per, now).rkey.(string)
		return k
	}
	l.Allow("user_joins", "alice", rate, now)
	l.sync(ctx)
	if key() == "" {
		t.Fatal("no key after the push")
	}
	for range refreshRecent + 1 {
		l.sync(ctx)
	}
	if k := key(); k != "" {
		t.Fatalf("key %q kept by a counter idle for %d syncs", k, refreshRecent+1)
	}
	l.Allow("user_joins", "alice", rate, now)
	l.sync(ctx)
	keys := c.Keys(ctx, "quota:*").Val()
	if len(keys) != 1 {
		t.Fatalf("Redis holds %v, want one counter", keys)
	}
	if v, err := sum(c.HVals(ctx, keys[0])); v != 2 {
		t.Fatalf("Redis's counter %s reads %d (%v), want 2", keys[0], v, err)
	}
}

// A counter's key expires two windows after its first push, later pushes
// leave the expiry be, and a key Redis lost is made again with an expiry:
// otherwise it would stay forever (noeviction never takes it either).
func TestCounterKeysExpire(t *testing.T) {
	r := startRedis(t)
	c := r.client()
	l := New(c, Options{Instance: "a"})
	ctx := t.Context()
	per := time.Hour
	rate := Rate{Count: 100, Per: per}
	now := freshWindow(per, 30*time.Second)
	push := func() string {
		t.Helper()
		l.Allow("user_sends", "alice", rate, now)
		l.sync(ctx)
		keys := c.Keys(ctx, "quota:*").Val()
		if len(keys) != 1 {
			t.Fatalf("Redis holds %v, want one counter", keys)
		}
		return keys[0]
	}
	key := push()
	if ttl := c.PTTL(ctx, key).Val(); ttl <= per || ttl > 2*per {
		t.Fatalf("after the first push %s expires in %v, want within two windows, more than one", key, ttl)
	}
	// Lengthened by hand: a push that set it again would shorten it.
	c.PExpire(ctx, key, 10*per)
	push()
	if ttl := c.PTTL(ctx, key).Val(); ttl <= 2*per {
		t.Fatalf("a later push set the expiry again: %v", ttl)
	}
	// Redis loses the key (a restart without its data): the next push
	// makes it again, and the sync after sets its expiry.
	c.FlushAll(ctx)
	push()
	l.sync(ctx)
	if ttl := c.PTTL(ctx, key).Val(); ttl <= per || ttl > 2*per {
		t.Fatalf("the key made again after its loss expires in %v, want within two windows", ttl)
	}
	if v, err := sum(c.HVals(ctx, key)); v != 3 {
		t.Fatalf("Redis's counter reads %d (%v), want 3", v, err)
	}
}

// TestACounterFits48Bytes: an idle connection holds three counters until
// their windows end; 48 bytes is a size class of the runtime's
// (runtime/sizeclasses.go), the next is 64.
func TestACounterFits48Bytes(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size > 48 {
		t.Errorf("a counter is %d bytes, want 48 at most", size)
	}
}

// counter is a copy of l's counter name for key in the window of per that
// holds now, read under its shard's lock (zero if there is none).
func counter(l *Limiter, name, key string, per time.Duration, now time.Time) entry {
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[entryKey{name: name, key: key, win: now.UnixNano() / int64(per)}]; e != nil {
		return *e
	}
	return entry{}
}
