// Package quota counts per-user and per-address quotas across instances in
// Redis (docs/abuse.md): rates per fixed window, decided from memory so the
// hot path never waits for Redis, and open connections, counted at each
// upgrade per instance incarnation so a crashed instance's connections stop
// counting once its heartbeat is stale.
package quota

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate is Count events per fixed window of Per; a Count of 0 (or a Per of
// 0) is no limit.
type Rate struct {
	Count int
	Per   time.Duration
}

func (r Rate) off() bool { return r.Count <= 0 || r.Per <= 0 }

// Options tune a Limiter; the zero value takes the defaults.
type Options struct {
	// Instance names this instance (its pod name); the host name by default.
	Instance string
	// SyncEvery is how often Run pushes the counts admitted here and reads
	// the others' (100ms). A user spread over instances may pass a rate by
	// what they admit in one such interval.
	SyncEvery time.Duration
	// Stale is how long an incarnation's open connections count after its
	// last heartbeat (10s).
	Stale time.Duration
	// Heartbeat is how often Run marks this incarnation alive (1s, at most
	// Stale/3).
	Heartbeat time.Duration
	// MaxRefresh caps the idle counters a sync reads back (1000, -1 none):
	// see sync.
	MaxRefresh int
	// OnError hears of every failed sync, heartbeat and release; nothing
	// waits for it to succeed. It is called from several goroutines.
	OnError func(error)
}

const (
	defaultSyncEvery  = 100 * time.Millisecond
	defaultStale      = 10 * time.Second
	defaultHeartbeat  = time.Second
	defaultMaxRefresh = 1000
	// refreshRecent is how many syncs back a counter must have been used
	// in for a sync to read it back while it has nothing to push.
	refreshRecent = 10
	// forgetAfter drops incarnations from the heartbeat set; their hash
	// fields go when open.lua meets them.
	forgetAfter = time.Hour
	// sweepEvery is how many syncs apart the counters of ended windows are
	// dropped: a sweep visits every counter, idle ones included (tens of
	// thousands after a burst of connects), so each sync sweeps a
	// sweepEvery-th of the shards, in turn. Swept all at once, every
	// sweepEvery-th sync held a one-core instance for 3-5 ms at 10,000
	// connections, and the messages waiting behind it made the latency's
	// tail (docs/log.md, 2026-12-06).
	sweepEvery = 10
	// syncTurns is how many turns Run spreads each sync over, evenly
	// within SyncEvery: each turn pushes and reads its share of the shards
	// in a pipeline of its own. In one pipeline, a busy instance's sync (1,000
	// users sending, 1,150 commands every 100 ms) held Redis, and a
	// one-core instance, long enough that the sends behind it made the p99
	// of 1000 rooms × 10 about 1 ms longer (docs/log.md, 2026-12-07).
	syncTurns = 8
	// refreshEvery is how many rounds apart a counter with nothing to
	// push is read back: each round reads those of a refreshEvery-th of
	// the shards, in turn. Read at every round, the idle counters of
	// 1000 rooms × 10 (the 850 users between two sends) were three
	// quarters of the sync's commands, and the quota about a sixth of
	// Redis's CPU (docs/log.md, 2026-12-07). A user busy on another
	// instance is still seen here within refreshEvery rounds.
	refreshEvery = 4
	// connTTL keeps a user's or address's connection hash after its last
	// Open. A connection open longer than that with no other Open of its
	// user stops counting: the error is on the side of admitting.
	connTTL = 24 * time.Hour
	// redisTimeout bounds a sync or heartbeat, releaseTimeout a release, as
	// far as the client honours contexts (go-redis applies a deadline to
	// socket reads only with ContextTimeoutEnabled; its own timeouts
	// otherwise).
	redisTimeout   = 2 * time.Second
	releaseTimeout = time.Second
	shards         = 256 // a power of 2
)

// Limiter counts quotas in Redis on behalf of one instance. Allow decides
// from memory; Run must run for the counts to be shared across instances
// (without it each instance counts alone).
type Limiter struct {
	rdb         redis.UniversalClient
	opts        Options
	incarnation string
	seed        maphash.Seed
	gen         atomic.Uint64 // syncs begun: when an entry was last used
	shards      [shards]shard

	syncMu sync.Mutex    // one sync at a time
	ops    []syncOp      // reused by sync
	cmds   []redis.Cmder // reused by sync
	// sets and reads are the pushes' HSETs and every counter's HVALS,
	// reused by each sync with their keys and counts put in their
	// arguments: made afresh, a read-back cost ~200 bytes in 5
	// allocations, 1.5 KB a message on the pinned 1000 rooms × 10, a
	// quarter of all a message allocated (docs/log.md, 2026-12-06).
	sets  []*redis.IntCmd
	reads []*redis.StringSliceCmd
	me    any // incarnation, as an argument
}

// shard is padded to a cache line so shards' locks do not share one.
type shard struct {
	mu sync.Mutex
	m  map[entryKey]*entry
	// active lists the counters a sync may have to push or read back: each
	// admitted since it was last listed stays until it has nothing pending
	// and was not used in refreshRecent syncs, so a sync visits the
	// counters in use, not every one kept.
	active []listed
	_      [24]byte
}

// listed is a counter in its shard's active list, with the key its Redis
// key and window length are made from.
type listed struct {
	k entryKey
	e *entry
}

type entryKey struct {
	name, key string
	win       int64 // the window's index: unix ns / Per
}

// entry counts one window of one quota for one key. It is 48 bytes (a size
// class of the runtime's), not 64: an idle connection holds three until
// their windows end.
type entry struct {
	end     int64  // the window's end, unix ns: (win+1) × Per, so Per is end/(win+1)
	rkey    any    // its Redis key (a string, boxed once), made by the sync that needs it, nil while idle
	synced  int32  // the window's total in Redis at the last sync, ours included (capped at MaxInt32)
	pushed  int32  // admitted here and written to Redis as this incarnation's count
	pending int32  // admitted here since (below count)
	count   int32  // the Count last asked for (capped at MaxInt32)
	used    uint32 // the sync generation of the last Allow, its low 32 bits
	listed  bool   // in its shard's active list
	expire  bool   // its key may lack an expiry: the next sync sets it
}

// New makes a Limiter for this instance. Its incarnation is Instance and a
// random suffix, so a restarted instance with the same name does not inherit
// the connections its dead predecessor left counted.
func New(rdb redis.UniversalClient, opts Options) *Limiter {
	if opts.Instance == "" {
		opts.Instance, _ = os.Hostname()
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = defaultSyncEvery
	}
	if opts.Stale <= 0 {
		opts.Stale = defaultStale
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = min(defaultHeartbeat, opts.Stale/3)
	}
	if opts.MaxRefresh == 0 {
		opts.MaxRefresh = defaultMaxRefresh
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:]) // never fails (crypto/rand, Go 1.24+)
	l := &Limiter{rdb: rdb, opts: opts, incarnation: opts.Instance + "#" + hex.EncodeToString(suffix[:]), seed: maphash.MakeSeed()}
	l.me = l.incarnation
	for i := range l.shards {
		l.shards[i].m = make(map[entryKey]*entry)
	}
	return l
}

// Incarnation is the name this Limiter's connections are counted under.
func (l *Limiter) Incarnation() string { return l.incarnation }

// Allow counts one event of quota name (e.g. "user_sends") for key (a user
// or an address) at now, or refuses it when the window's count is spent as
// far as this instance knows, with the time left in the window. It never
// touches Redis. The zero Rate allows everything.
func (l *Limiter) Allow(name, key string, r Rate, now time.Time) (ok bool, retryAfter time.Duration) {
	if r.off() {
		return true, 0
	}
	ns, per := now.UnixNano(), int64(r.Per)
	win := ns / per
	k := entryKey{name: name, key: key, win: win}
	gen := uint32(l.gen.Load())
	s := l.shard(key)
	s.mu.Lock()
	e := s.m[k]
	if e == nil {
		e = &entry{end: (win + 1) * per}
		s.m[k] = e
	}
	e.used, e.count = gen, int32(min(r.Count, math.MaxInt32))
	if !e.listed {
		e.listed = true
		s.active = append(s.active, listed{k, e})
	}
	if int64(e.synced)+int64(e.pending) >= int64(e.count) {
		s.mu.Unlock()
		return false, time.Duration(e.end - ns)
	}
	e.pending++
	s.mu.Unlock()
	return true, 0
}

// Run syncs the rate counters every SyncEvery and heartbeats this
// incarnation every Heartbeat until ctx ends. Failures go to OnError and are
// retried at the next tick; Allow never waits for them. Call it once.
func (l *Limiter) Run(ctx context.Context) {
	var wg sync.WaitGroup
	// Apart, so a slow sync cannot delay the heartbeat past Stale.
	wg.Go(func() { l.every(ctx, l.opts.Heartbeat, l.heartbeat) })
	wg.Go(func() {
		turn := 0
		l.every(ctx, l.opts.SyncEvery/syncTurns, func(ctx context.Context) {
			l.syncTurn(ctx, turn, syncTurns)
			turn = (turn + 1) % syncTurns
		})
	})
	wg.Wait()
}

func (l *Limiter) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *Limiter) fail(err error) {
	if l.opts.OnError != nil {
		l.opts.OnError(err)
	}
}

// syncOp is one counter a sync pushes (push > 0) or only reads.
type syncOp struct {
	s       *shard
	e       *entry
	push    int64
	per     time.Duration // the window's length
	set     *redis.IntCmd // the push's HSET: 1 when it made this incarnation's field
	expires bool          // the sync sets the key's expiry
	counts  *redis.StringSliceCmd
}

// shard is the one that holds key's counters.
func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)&(shards-1)]
}

// sync writes this incarnation's count of each counter it admitted to since
// the last sync, in one pipeline, and learns each window's total, the sum
// of every incarnation's count, from the replies. The count written is the
// whole of what was admitted here in the window, not what was added: a
// write applied whose reply was lost (a primary killed mid-pipeline, a
// cluster's pipeline failed on one shard and applied on the others, a
// client's retry) is written again at the next sync to the same effect,
// where an INCRBY would count it twice (issue 29). A replica promoted
// without the last write gets it again with the next.
// Counters with nothing to push, used in the last refreshRecent syncs and
// not yet spent are read back every refreshEvery syncs, so a user busy on
// another instance is seen here before it comes here; at most MaxRefresh
// of them per sync (map order picks which), as each costs Redis a command
// while it is idle here. Reading spent counters is useless: a window's total
// only grows. Entries of ended windows are dropped within sweepEvery syncs.
func (l *Limiter) sync(run context.Context) { l.syncTurn(run, 0, 1) }

// syncTurn is turn (from 0) of a sync spread over turns: the shards i with
// i % turns == turn, and a turns-th of MaxRefresh's reads. A sync is a
// round of turns: its first counts the round (gen), so a counter is pushed
// and read back once a round, as in one sync of every shard.
func (l *Limiter) syncTurn(run context.Context, turn, turns int) {
	if run.Err() != nil {
		return
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	gen := uint32(l.gen.Load())
	if turn == 0 {
		gen = uint32(l.gen.Add(1))
	}
	now := time.Now().UnixNano()
	refresh := l.opts.MaxRefresh
	if refresh > 0 {
		refresh = (refresh + turns - 1) / turns
	}
	ops := l.ops[:0]
	for i := turn; i < shards; i += turns {
		s := &l.shards[i]
		s.mu.Lock()
		if uint32(i)%sweepEvery == gen%sweepEvery {
			for k, e := range s.m {
				if now >= e.end {
					delete(s.m, k)
				}
			}
		}
		kept := s.active[:0]
		for _, a := range s.active {
			e := a.e
			if now >= e.end || e.pending == 0 && gen-e.used > refreshRecent {
				// Ended, or idle: Allow lists it again. The key is made
				// again if it is used: an idle connection's windows (its
				// address's connects, its user's joins and rooms) then
				// hold no key until they end.
				e.listed, e.rkey = false, nil
				continue
			}
			kept = append(kept, a)
			switch {
			case e.pending > 0 || e.expire:
			case refresh > 0 && e.synced < e.count && (gen+uint32(i/turns))%refreshEvery == 0:
				refresh--
			default:
				continue
			}
			if e.rkey == nil {
				e.rkey = rateKey(a.k)
			}
			ops = append(ops, syncOp{s: s, e: e, push: int64(e.pending), per: time.Duration(e.end / (a.k.win + 1))})
		}
		clear(s.active[len(kept):])
		s.active = kept
		s.mu.Unlock()
	}
	defer func() { clear(ops); l.ops = ops[:0] }()
	if len(ops) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(run, redisTimeout)
	defer cancel()
	cmds := l.cmds[:0]
	sets, reads := 0, 0
	for i := range ops {
		op := &ops[i]
		if op.push > 0 {
			op.set = reuse(&l.sets, sets, redis.NewIntCmd, "hset", op.e.rkey, l.me, int64(op.e.pushed)+op.push)
			sets++
			cmds = append(cmds, op.set)
		}
		// Two windows from this incarnation's first push, which comes
		// inside the window: the key outlives its window. Later pushes
		// leave the expiry be, a command less per push, unless the key may
		// have been made again without one (see below).
		if op.expires = op.push > 0 && op.e.pushed == 0 || op.e.expire; op.expires {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "pexpire", op.e.rkey, (2*op.per).Milliseconds()))
		}
		op.counts = reuse(&l.reads, reads, redis.NewStringSliceCmd, "hvals", op.e.rkey)
		reads++
		cmds = append(cmds, op.counts)
	}
	defer func() {
		clear(cmds)
		l.cmds, l.sets, l.reads = cmds[:0], keep(l.sets), keep(l.reads)
	}()
	// Queued at once, the pipeline makes its list of commands once, not
	// grown command by command from empty at every sync (a kilobyte and
	// more for each hundred commands).
	pipe := l.rdb.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...) // only queues: never fails
	// A failure of the connection may leave commands without an error of
	// their own (go-redis v9.14 does not mark them once its retries run
	// out): then no reply is trusted, and the next sync writes the same
	// counts again. Error replies are the commands' own.
	_, err := pipe.Exec(ctx)
	var reply redis.Error
	if err != nil && !errors.As(err, &reply) {
		if run.Err() != nil {
			return // stopping: what is pending is dropped with the Limiter
		}
		// A push may have been applied (the key made again after a loss)
		// without its expiry: the next sync sets it.
		for i := range ops {
			if op := &ops[i]; op.push > 0 {
				op.s.mu.Lock()
				op.e.expire = true
				op.s.mu.Unlock()
			}
		}
		l.fail(fmt.Errorf("sync %d quota counters: %w", len(ops), err))
		return
	}
	err = nil
	for i := range ops {
		op := &ops[i]
		v, cerr := sum(op.counts)
		op.s.mu.Lock()
		switch {
		case cerr != nil && op.push > 0, op.set != nil && op.set.Val() == 1 && !op.expires:
			// Not known to be pushed, or pushed as this incarnation's new
			// field though it had pushed before: Redis lost the key, and
			// the push made it again without an expiry.
			op.e.expire = true
		case op.expires:
			op.e.expire = false
		}
		if cerr != nil {
			op.s.mu.Unlock()
			err = cmp.Or(err, fmt.Errorf("sync quota counter %s: %w", op.e.rkey, cerr))
			continue // pending stays, for the next sync
		}
		op.e.pending -= int32(op.push) // what was admitted meanwhile stays pending
		op.e.pushed += int32(op.push)
		op.e.synced = int32(min(v, math.MaxInt32))
		op.s.mu.Unlock()
	}
	if err != nil {
		l.fail(err)
	}
}

// reuse gives the i-th command of pool with args, made by mk if the pool
// is shorter. go-redis reads a command's arguments when it writes it and
// sets its reply and error when it reads the reply, so a command serves
// every sync; sync trusts no reply unless the pipeline ran whole, so a
// reply is never the last sync's. Arguments the caller boxed once (the
// key, the incarnation) cost nothing here.
func reuse[C redis.Cmder](pool *[]C, i int, mk func(context.Context, ...any) C, args ...any) C {
	if i == len(*pool) {
		*pool = append(*pool, mk(context.Background(), slices.Clone(args)...))
	}
	c := (*pool)[i]
	copy(c.Args(), args)
	c.SetErr(nil)
	return c
}

// keptCmds bounds the commands of each kind a sync keeps for the next,
// above the reads a steady sync makes (MaxRefresh's 1,000 and the pushes):
// the thousands of pushes after a burst of connects leave theirs to the
// collector rather than to every later mark phase.
const keptCmds = 2048

func keep[C any](pool []C) []C {
	if len(pool) <= keptCmds {
		return pool
	}
	return slices.Clone(pool[:keptCmds])
}

// sum is the window's total: every incarnation's count (none when nobody
// has counted in it yet).
func sum(counts *redis.StringSliceCmd) (int64, error) {
	vs, err := counts.Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, v := range vs {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("a count %q: %w", v, err)
		}
		total += n
	}
	return total, nil
}
