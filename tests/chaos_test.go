package tests

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/client"
	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/tests/chaos"
	"github.com/switchboard-dev/switchboard/tests/target"
)

var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of the chaos test's schedule (default: $SWITCHBOARD_CHAOS_SEED, else 1)")
	chaosDuration = flag.Duration("chaos.duration", 0, "how long the chaos test injects faults (default: $SWITCHBOARD_CHAOS_DURATION, else 1m)")
)

// The chaos test's shape: enough clients, rooms and faults to break every
// recovery path in a minute, small enough for a shared 2-core machine.
const (
	chaosClients   = 50
	chaosRooms     = 6
	chaosInstances = 3
	// Small queues and history, so that slow readers overflow, resumes go
	// past Redis's history to Postgres, and catch-ups exceed the queue.
	chaosSendQueue   = 64
	chaosHistorySize = 100
	// A low recovery limit (the least the server takes), so that resumes
	// after a long absence take the one path that may announce stored
	// messages as a gap, and the checker's exception for it runs for real.
	chaosRecoveryLimit = 200
)

// chaosFloors is the least a run must do (per run, whatever its length):
// below it a pass proves nothing, and the run fails as vacuous. Every kind
// of fault the schedule has is required too (chaosRun.kinds), and each
// refusal the hostile users must draw (hostileFloors).
var chaosFloors = chaos.Floors{Acks: 300, WireDeliveries: 3000, Resumes: 30}

// chaosSettings are the seed and duration from flags or the environment.
func chaosSettings(t *testing.T) (uint64, time.Duration) {
	seed, duration := uint64(1), time.Minute
	if v := os.Getenv("SWITCHBOARD_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SWITCHBOARD_CHAOS_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	if v := os.Getenv("SWITCHBOARD_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("SWITCHBOARD_CHAOS_DURATION=%q: want a positive Go duration like 10m", v)
		}
		duration = d
	}
	if *chaosSeed != 0 {
		seed = *chaosSeed
	}
	if *chaosDuration != 0 {
		duration = *chaosDuration
	}
	return seed, duration
}

// sentinelSupported asks this tree's configuration whether the chat server
// accepts a Sentinel REDIS_URL; if not, why.
func sentinelSupported() (bool, string) {
	env := map[string]string{"JWT_SECRET": "chaos-capability-check-0123456789abcdef", "REDIS_URL": "redis+sentinel://127.0.0.1:26379/" + "switchboard"}
	if _, err := config.Load(func(k string) string { return env[k] }); err != nil {
		return false, fmt.Sprintf("the chat server does not accept a Sentinel REDIS_URL yet (%v)", err)
	}
	return true, ""
}

// TestChaos runs clients that join, leave, send, read slowly and reconnect
// at random while a seeded schedule kills instances, restarts Redis with
// and without its data, fails Redis over through Sentinel, stops Postgres,
// wipes the Redis primary while it stays primary, has Redis evict keys,
// and overlaps faults (a failover, a kill or a wipe while Postgres is down,
// a kill while the clients of another killed instance reconnect); then it
// checks everything the clients saw, and what Postgres holds, against the
// guarantees (tests/chaos). A failure prints the seed and the events around
// each violation.
//
// The last chaosHostile clients attack meanwhile (chaos_hostile_test.go):
// poison values, a send flood, a join spray and a resume storm past the
// per-user quotas, a reconnect storm past the per-address and connection
// limits. What they get acked is checked like anyone's; every other client
// must never be refused by a quota; and each attack must have been refused
// as docs/abuse.md says often enough (chaos.Floors.Hostile), or the run
// fails as vacuous (SWITCHBOARD_CHAOS_HOSTILE=off shows it).
//
// One instance acks without waiting for a replica (REDIS_MIN_REPLICAS=0),
// the others wait for one: every run, make test's seed 1 included, has both
// kinds of ack under the same failovers and wipes, rather than half the
// seeds having none of one.
func TestChaos(t *testing.T) {
	seed, duration := chaosSettings(t)
	// The run bounds itself (make chaos runs without go test's timeout):
	// past its budget something hangs, and every goroutine's stack says what.
	watchdog := time.AfterFunc(duration+10*time.Minute, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("chaos: seed %d still running %s after its %s of faults", seed, 10*time.Minute, duration))
	})
	defer watchdog.Stop()
	dir, err := os.MkdirTemp("", "switchboard-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if os.Getenv("SWITCHBOARD_KEEP_STATE") == "" {
			os.RemoveAll(dir)
		}
	}()
	bin := buildChatserver(t, dir)
	opts := []target.LocalOption{target.WithEnv(
		"SEND_QUEUE="+strconv.Itoa(chaosSendQueue), "HISTORY_SIZE="+strconv.Itoa(chaosHistorySize),
		"RECOVERY_LIMIT="+strconv.Itoa(chaosRecoveryLimit), "RATE_LIMIT=1000", "RATE_BURST=1000"),
		target.WithEnv(chaosLimits...)}
	sentinel, why := sentinelSupported()
	cluster := os.Getenv("SWITCHBOARD_REDIS") == "cluster"
	switch {
	case cluster:
		// A shard's failovers and slot moves instead of Sentinel's; acks
		// wait for the shard's replica but the last instance's.
		sentinel = false
		opts = append(opts, target.WithRedisCluster(3), target.WithEnv("REDIS_MIN_REPLICAS=1"),
			target.WithInstanceEnv(chaosInstances-1, "REDIS_MIN_REPLICAS=0"))
	case sentinel:
		// Acks wait for the replica: a failover then loses no acked
		// message. The last instance's do not.
		opts = append(opts, target.WithSentinel(), target.WithEnv("REDIS_MIN_REPLICAS=1"),
			target.WithInstanceEnv(chaosInstances-1, "REDIS_MIN_REPLICAS=0"))
	default:
		report.Logf(t, "chaos: SKIPPING the Redis failover through Sentinel: %s", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l, err := target.StartLocal(ctx, dir, bin, chaosInstances, opts...)
	cancel()
	if err != nil {
		t.Fatalf("start the local target: %v", err)
	}
	defer func() {
		if err := l.Down(); err != nil {
			t.Errorf("stop the local target: %v", err)
		}
	}()
	report.Logf(t, "chaos: seed %d, %s of faults, %d clients (%d of them hostile), %d rooms, %d instances, Redis %s, Sentinel %v (chat-%d acks without a replica), RECOVERY_LIMIT %d, limits %v; state in %s",
		seed, duration, chaosClients, chaosHostile, chaosRooms, chaosInstances, l.RedisURL(), sentinel, chaosInstances, chaosRecoveryLimit, chaosLimits, dir)

	r := &chaosRun{t: t, s: newSuite(l, true), l: l, rec: &chaos.Recorder{}, seed: seed, sentinel: sentinel, cluster: cluster,
		faults: map[string]int{}, ops: map[string]int{}}
	for i := range chaosRooms {
		r.rooms = append(r.rooms, fmt.Sprintf("chaos-%d", i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range chaosClients - chaosHostile {
		u := r.newUser(i)
		wg.Add(1)
		go func() { defer wg.Done(); u.run(stop) }()
	}
	for i := chaosClients - chaosHostile; i < chaosClients && hostileEnabled(); i++ {
		u := r.newHostile(i)
		wg.Add(1)
		go func() { defer wg.Done(); u.run(stop) }()
	}
	// The users go on until the schedule ends: it finishes its last round
	// of faults past the duration, and they should meet every one.
	r.injectFaults(time.Now().Add(duration))
	close(stop)
	wg.Wait()
	r.settle()
	defer r.closeUsers()

	reached := r.converge(time.Minute)
	stored := r.drain(time.Minute)
	// Before the history is read: a 429 to an honest user goes into it.
	peakUpgrades, tooMany, err := r.balancer(dir)
	if err != nil {
		t.Errorf("read the balancer's access log: %v", err)
	}
	events := r.rec.Events()
	floors := chaosFloors
	floors.Faults = r.kinds()
	floors.Hostile = hostileFloors
	check := chaos.Options{RecoveryLimit: chaosRecoveryLimit, Floors: floors}
	for i := chaosClients - chaosHostile; i < chaosClients; i++ {
		check.Hostile = append(check.Hostile, i)
	}
	if sentinel || cluster {
		check.Unreplicated = []string{l.Chats[chaosInstances-1].ID}
	}
	vs := chaos.Check(events, stored, reached, check)
	sends, joins, far := honestPeaks(events, chaosHistorySize)
	report.Logf(t, "chaos: honest users' peaks per user in any minute: %d sends, %d joins, %d far resumes, %d upgrades per address (limits %v); 429s in the balancer's log by whose address: %v",
		sends, joins, far, peakUpgrades, chaosLimits, tooMany)
	report.Logf(t, "%s", r.hostileReport(events))
	r.report(events, stored, vs, chaos.Losses(events, stored, check), chaos.StaleReturns(events, stored, check))
}

// chaosRun is one run's target, users, history and counts.
type chaosRun struct {
	t        *testing.T
	s        *suite
	l        *target.Local
	rec      *chaos.Recorder
	seed     uint64
	sentinel bool
	cluster  bool // a Redis Cluster (SWITCHBOARD_REDIS=cluster)
	rooms    []string
	users    []*chaosUser
	hostile  []*hostileUser

	mu     sync.Mutex
	faults map[string]int
	ops    map[string]int
}

func (r *chaosRun) count(m map[string]int, what string) {
	r.mu.Lock()
	m[what]++
	r.mu.Unlock()
}

// chaosUser is one simulated user: a client it replaces when it reconnects
// by hand, the rooms it is in and the last seq it saw in each.
type chaosUser struct {
	r    *chaosRun
	i    int
	name string
	rng  *rand.Rand
	slow bool // reads its socket slowly

	mu     sync.Mutex
	cl     *client.Client
	gen    int
	reader sync.WaitGroup
	seen   map[string]int64 // room → newest seq delivered or given up as a gap
	joined map[string]bool
	errs   map[string]int    // what the client reported on Errors, by type
	acked  map[string]string // room and id ("room/id") → text of each acked send
	sent   atomic.Int64
}

func (r *chaosRun) newUser(i int) *chaosUser {
	u := &chaosUser{r: r, i: i, name: fmt.Sprintf("chaos-%d", i),
		rng:  rand.New(rand.NewPCG(r.seed, uint64(i)+1)),
		seen: map[string]int64{}, joined: map[string]bool{}, errs: map[string]int{}, acked: map[string]string{}}
	u.slow = u.rng.IntN(5) == 0
	r.users = append(r.users, u)
	return u
}

// dial replaces the user's client with a new one (the first: gen 1).
func (u *chaosUser) dial() error {
	u.gen++
	gen := u.gen
	tok, err := u.r.s.Token(u.name, 24*time.Hour)
	if err != nil {
		return err
	}
	trace := u.r.rec.Tracer(u.i, gen, u.name)
	if u.slow {
		// A slow reader: its socket backs up while it dawdles over frames.
		inner, rng := trace, rand.New(rand.NewPCG(u.r.seed, uint64(u.i)+1000))
		trace = func(conn int, sent bool, frame []byte) {
			inner(conn, sent, frame)
			if !sent && rng.IntN(50) == 0 {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cl, err := client.Dial(ctx, client.Options{
			URL: u.r.s.wsURL, Token: tok, LocalAddr: u.r.s.source(u.i),
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, FillGaps: true, Trace: trace,
		})
		if err == nil {
			u.mu.Lock()
			u.cl = cl
			u.mu.Unlock()
			u.reader.Add(1)
			go u.read(cl)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("dial as %s: %w", u.name, err)
		}
		time.Sleep(200 * time.Millisecond) // the instance behind ip_hash may be down
	}
}

// read records what the client hands its user until it is closed.
func (u *chaosUser) read(cl *client.Client) {
	defer u.reader.Done()
	msgs, errs := cl.Messages(), cl.Errors()
	for msgs != nil || errs != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			u.r.rec.Record(chaos.Event{Client: u.i, Kind: chaos.Delivered, Room: m.Room, Seq: m.Seq, User: m.User, ID: m.ID, Text: m.Text})
			u.saw(m.Room, m.Seq)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			var gap *client.GapError
			var join *client.JoinError
			switch {
			case errors.As(err, &gap):
				var why string // the history API's failure, if it is why
				if gap.Err != nil {
					why = gap.Err.Error()
				}
				u.r.rec.Record(chaos.Event{Client: u.i, Kind: chaos.Gap, Room: gap.Room, From: gap.From, To: gap.To, Text: why})
				u.saw(gap.Room, gap.To)
				u.count("gap")
			case errors.As(err, &join):
				u.mu.Lock()
				delete(u.joined, join.Room)
				u.mu.Unlock()
				u.count("rejoin refused")
			default:
				u.count("other")
			}
		}
	}
}

func (u *chaosUser) saw(room string, seq int64) {
	u.mu.Lock()
	u.seen[room] = max(u.seen[room], seq)
	u.mu.Unlock()
}

func (u *chaosUser) count(what string) {
	u.mu.Lock()
	u.errs[what]++
	u.mu.Unlock()
}

func (u *chaosUser) client() *client.Client {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cl
}

// run performs random operations until stop is closed.
func (u *chaosUser) run(stop <-chan struct{}) {
	if err := u.dial(); err != nil {
		u.r.t.Errorf("user %d: %v", u.i, err)
		return
	}
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(50+u.rng.IntN(250)) * time.Millisecond):
		}
		u.mu.Lock()
		var in, out []string
		for _, room := range u.r.rooms {
			if u.joined[room] {
				in = append(in, room)
			} else {
				out = append(out, room)
			}
		}
		u.mu.Unlock()
		switch p := u.rng.IntN(100); {
		case len(in) == 0 || (p < 10 && len(out) > 0 && len(in) < 3):
			u.join(out[u.rng.IntN(len(out))])
		case p < 14 && len(in) > 1:
			u.leave(in[u.rng.IntN(len(in))])
		case p < 16:
			u.reconnect()
		default:
			u.send(in[u.rng.IntN(len(in))])
		}
	}
}

// join joins room, resuming after what it saw if it was there before.
func (u *chaosUser) join(room string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u.mu.Lock()
	since, before := u.seen[room]
	u.mu.Unlock()
	var err error
	var at int64
	if before {
		_, err = u.client().Resume(ctx, room, since)
		u.r.count(u.r.ops, "resume")
	} else {
		at, err = u.client().Join(ctx, room)
		u.r.count(u.r.ops, "join")
	}
	if err != nil {
		u.r.count(u.r.ops, "join failed")
		return
	}
	u.mu.Lock()
	u.joined[room] = true
	// A fresh member is owed only what comes after the room's position at
	// its join: it has reached that much.
	u.seen[room] = max(u.seen[room], at)
	u.mu.Unlock()
}

// leave leaves room, remembering the client's last seq there for a resume.
func (u *chaosUser) leave(room string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last, err := u.client().Leave(ctx, room)
	if err != nil {
		u.r.count(u.r.ops, "leave failed")
		return
	}
	u.mu.Lock()
	u.seen[room] = max(u.seen[room], last)
	delete(u.joined, room)
	u.mu.Unlock()
	u.r.count(u.r.ops, "leave")
}

// reconnect is the user dropping its client and dialing again: every room
// is resumed after the last seq the old client reached.
func (u *chaosUser) reconnect() {
	cl := u.client()
	u.mu.Lock()
	rooms := make([]string, 0, len(u.joined))
	for room := range u.joined {
		rooms = append(rooms, room)
	}
	u.mu.Unlock()
	cl.Close()
	u.reader.Wait() // what the old client delivered is recorded before the new one's
	for _, room := range rooms {
		u.saw(room, cl.LastSeq(room))
	}
	u.r.count(u.r.ops, "reconnect")
	if err := u.dial(); err != nil {
		u.r.t.Errorf("user %d: %v", u.i, err)
		return
	}
	u.mu.Lock()
	clear(u.joined)
	u.mu.Unlock()
	slices.Sort(rooms)
	for _, room := range rooms {
		u.join(room)
	}
}

// send sends one message, retrying with the same id while the server
// refuses it for now (internal, overloaded) or the ack does not come.
func (u *chaosUser) send(room string) {
	cl := u.client()
	id := cl.NewID()
	text := fmt.Sprintf("%s #%d", u.name, u.sent.Add(1))
	u.r.count(u.r.ops, "send")
	for attempt := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cl.SendID(ctx, room, id, text)
		cancel()
		var perr *protocol.Error
		switch {
		case err == nil:
			u.r.count(u.r.ops, "acked")
			u.mu.Lock()
			u.acked[room+"/"+id] = text
			u.mu.Unlock()
			return
		case errors.As(err, &perr) && (perr.Code == protocol.CodeInternal || perr.Code == protocol.CodeOverloaded || perr.Code == protocol.CodeRateLimited):
			u.r.count(u.r.ops, "send refused "+perr.Code)
		case errors.Is(err, context.DeadlineExceeded):
			u.r.count(u.r.ops, "send timed out")
		default:
			u.r.count(u.r.ops, "send failed")
			return
		}
		time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
	}
	u.r.count(u.r.ops, "send given up")
}

// The kinds of fault the schedule injects. The composite ones overlap two
// faults, so that the recovery paths meet each other: a failover, a kill
// or a wipe while Postgres is down (the persist backlog, and a counter
// reseed that cannot read Postgres), a kill while the clients of another
// killed instance reconnect and resume.
// The checker knows the ones that lose data (tests/chaos/loss.go).
const (
	faultKill         = "kill instance"
	faultRestartRedis = chaos.FaultRestartRedis
	faultRedisNoData  = chaos.FaultRedisNoData
	faultStopPostgres = chaos.FaultStopPostgres
	faultFailover     = chaos.FaultFailover
	faultWipe         = chaos.FaultWipe
	faultEvict        = "evict redis keys"
	faultKillStorm    = "kill instance during a reconnect storm"
	faultKillShard    = chaos.FaultKillShardPrimary
	faultClusterFail  = chaos.FaultClusterFailover
	faultReshard      = chaos.FaultReshard
	whilePostgresDown = chaos.WhilePostgresDown
)

// kinds are the faults of this run's schedule, each of which must take
// effect at least once.
func (r *chaosRun) kinds() []string {
	if r.cluster {
		// The one-Redis restarts and wipe act on one primary; a cluster's
		// are its shards' failovers and slot moves. Eviction is a shard's.
		return []string{faultKill, faultStopPostgres, faultKillStorm, faultKill + whilePostgresDown, faultEvict,
			faultKillShard, faultClusterFail, faultReshard, faultClusterFail + whilePostgresDown, faultReshard + whilePostgresDown}
	}
	kinds := []string{faultKill, faultRestartRedis, faultRedisNoData, faultStopPostgres, faultWipe, faultEvict,
		faultKillStorm, faultKill + whilePostgresDown, faultWipe + whilePostgresDown}
	if r.sentinel {
		kinds = append(kinds, faultFailover, faultFailover+whilePostgresDown)
	}
	return kinds
}

// injectFaults runs the seeded schedule in rounds of every kind, in a
// seeded order, until end; the round under way is finished, so that even a
// short run injects each kind. A fault that did not take effect (a
// failover refused, no key evicted) goes to the end of the round, twice at
// most; after its undo each fault that did is recorded with its kind.
func (r *chaosRun) injectFaults(end time.Time) {
	rng := rand.New(rand.NewPCG(r.seed, 0))
	kinds := r.kinds()
	time.Sleep(3 * time.Second) // traffic before the first fault
	tries := map[string]int{}
	var round []string
	for len(round) > 0 || time.Now().Before(end) {
		if len(round) == 0 {
			for _, i := range rng.Perm(len(kinds)) {
				round = append(round, kinds[i])
			}
		}
		kind := round[0]
		round = round[1:]
		outage := time.Duration(500+rng.IntN(3000)) * time.Millisecond
		err := r.fault(kind, rng, outage)
		var none *noEffect
		switch {
		case errors.As(err, &none):
			report.Logf(r.t, "chaos: %s: %v", kind, err)
			r.count(r.faults, kind+" without effect")
			if tries[kind]++; tries[kind] < 3 {
				round = append(round, kind)
			}
		case err != nil:
			r.t.Errorf("fault %q: %v", kind, err)
			return
		default:
			r.rec.Record(chaos.Event{Client: -1, Kind: chaos.Fault, Code: kind, Text: "took effect: " + kind})
			r.count(r.faults, kind)
		}
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	}
}

// fault injects one fault and undoes it after outage; both go into the
// history, so that a violation's report shows the faults around it.
func (r *chaosRun) fault(kind string, rng *rand.Rand, outage time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	note := func(format string, args ...any) {
		r.rec.Record(chaos.Event{Client: -1, Kind: chaos.Fault, Text: fmt.Sprintf(format, args...)})
	}
	// kill SIGKILLs an instance, named in the history: the checker gives the
	// messages its writer may have held the time another takes them over.
	kill := func(id, format string, args ...any) error {
		r.rec.Record(chaos.Event{Client: -1, Kind: chaos.Fault, Instance: id, Text: fmt.Sprintf(format, args...)})
		return r.l.Kill(ctx, id)
	}
	if inner, ok := strings.CutSuffix(kind, whilePostgresDown); ok {
		note("stop Postgres (then %s)", inner)
		if err := r.l.StopPostgres(ctx); err != nil {
			return err
		}
		time.Sleep(outage / 2)
		err := r.fault(inner, rng, outage/2)
		time.Sleep(outage / 2)
		if err := r.l.StartPostgres(ctx); err != nil {
			return err
		}
		note("Postgres started again")
		return err
	}
	switch kind {
	case faultKill:
		id := r.l.Chats[rng.IntN(len(r.l.Chats))].ID
		if err := kill(id, "SIGKILL %s", id); err != nil {
			return err
		}
		time.Sleep(outage)
		defer note("%s started again", id)
		return r.l.Start(ctx, id)
	case faultKillStorm:
		// The first instance's clients reconnect through the others and
		// resume every room: the second dies while they do.
		i := rng.IntN(len(r.l.Chats))
		first, second := r.l.Chats[i].ID, r.l.Chats[(i+1+rng.IntN(len(r.l.Chats)-1))%len(r.l.Chats)].ID
		if err := kill(first, "SIGKILL %s", first); err != nil {
			return err
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		if err := kill(second, "SIGKILL %s while the clients of %s reconnect", second, first); err != nil {
			return err
		}
		time.Sleep(outage)
		for _, id := range []string{first, second} {
			if err := r.l.Start(ctx, id); err != nil {
				return err
			}
			note("%s started again", id)
		}
		return nil
	case faultRestartRedis, faultRedisNoData:
		primary, err := r.l.Primary(ctx)
		if err != nil {
			return err
		}
		note("%s: the primary %s", kind, primary.Name)
		defer note("%s back", primary.Name)
		return r.l.RestartRedis(ctx, primary, kind == faultRestartRedis)
	case faultWipe:
		// Unlike a restart without data, no failover saves the data: the
		// empty node stays primary and its replica resyncs to nothing.
		note("SIGKILL the Redis primary, wipe it, start it again with failovers held")
		node, err := r.l.WipePrimary(ctx)
		if err != nil {
			return err
		}
		note("%s back empty as the primary; its replica resynced from it", node.Name)
		return nil
	case faultEvict:
		return r.evict(ctx, note, outage, rng)
	case faultKillShard, faultClusterFail, faultReshard:
		return r.clusterFault(ctx, kind, rng, note)
	case faultFailover:
		note("SENTINEL FAILOVER")
		// A replica still syncing after a restart is no candidate: the
		// sentinels refuse, or promote nothing within the wait.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := r.l.Failover(ctx); err != nil {
			note("failover refused: %v", err)
			return &noEffect{err}
		}
		note("failover done")
		return nil
	case faultStopPostgres:
		note("stop Postgres")
		if err := r.l.StopPostgres(ctx); err != nil {
			return err
		}
		time.Sleep(outage)
		defer note("Postgres started again")
		return r.l.StartPostgres(ctx)
	}
	return fmt.Errorf("unknown fault %q", kind)
}

// clusterFault fails a random shard over (SIGKILL of its primary, or
// CLUSTER FAILOVER) or moves slots from one primary to another with
// redis-cli --cluster reshard, while the users send; each returns once the
// cluster is healthy again.
func (r *chaosRun) clusterFault(ctx context.Context, kind string, rng *rand.Rand, note func(string, ...any)) error {
	c := r.l.Cluster
	primaries, err := c.Primaries(ctx)
	if err != nil {
		return err
	}
	primary := primaries[rng.IntN(len(primaries))]
	switch kind {
	case faultKillShard:
		note("SIGKILL %s, a shard's primary", primary.Name)
		promoted, err := c.KillPrimary(ctx, primary)
		if err != nil {
			return err
		}
		if promoted.Forced != "" {
			// Redis's election, not Switchboard, failed: said in the history and the log.
			note("%s not elected: CLUSTER FAILOVER TAKEOVER", promoted.Node.Name)
			report.Logf(r.t, "chaos: %s was not elected after %s was killed, and was made to take over; the nodes logged:\n%s", promoted.Node.Name, primary.Name, promoted.Forced)
		}
		note("%s promoted; %s back as its replica", promoted.Node.Name, primary.Name)
	case faultClusterFail:
		note("CLUSTER FAILOVER of %s's shard", primary.Name)
		promoted, err := c.Failover(ctx, primary)
		if err != nil {
			return err
		}
		note("%s promoted", promoted.Name)
	case faultReshard:
		// From a shard that holds a room and has slots to spare: one that
		// earlier reshards drained (seed 10 picked a primary left with 1
		// slot four times), or that holds no room, would move nothing the
		// clients use.
		var from []*local.Redis
		var spare []int
		for _, p := range r.holdingRooms(ctx) {
			owned, err := c.OwnedSlots(ctx, p)
			if err != nil {
				return err
			}
			if owned > 1 {
				from, spare = append(from, p), append(spare, owned)
			}
		}
		if len(from) == 0 {
			return &noEffect{errors.New("no shard that holds a room serves more than one slot")}
		}
		i := rng.IntN(len(from))
		primary = from[i]
		to := primaries[(slices.Index(primaries, primary)+1+rng.IntN(len(primaries)-1))%len(primaries)]
		// Most of its slots, so that the rooms' partitions move too; never
		// all, which would leave a primary without slots.
		n := min(spare[i]-1, 1000+rng.IntN(3000))
		before := r.roomShards(ctx)
		note("redis-cli --cluster reshard: %d slots from %s to %s", n, primary.Name, to.Name)
		if err := c.Reshard(ctx, primary, to, n); err != nil {
			return err
		}
		var moved []string
		for room, node := range r.roomShards(ctx) {
			if before[room] != nil && before[room] != node {
				moved = append(moved, room)
			}
		}
		slices.Sort(moved)
		note("%d slots moved, with the rooms %v", n, moved)
		if len(moved) == 0 {
			return &noEffect{fmt.Errorf("no room's slot among the %d moved", n)}
		}
	}
	return nil
}

// roomShards is the primary that holds each room's counter now.
func (r *chaosRun) roomShards(ctx context.Context) map[string]*local.Redis {
	out := map[string]*local.Redis{}
	primaries, err := r.l.Cluster.Primaries(ctx)
	if err != nil {
		return out
	}
	for _, p := range primaries {
		c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
		keys, _ := c.Keys(ctx, "chat:*:r:chaos-*:seq").Result()
		c.Close()
		for _, k := range keys {
			if i := strings.Index(k, ":r:"); i >= 0 {
				out[strings.TrimSuffix(k[i+3:], ":seq")] = p
			}
		}
	}
	return out
}

// holdingRooms lists the primaries that hold a room's counter now, in name
// order: the seed, not a map's order, picks among them.
func (r *chaosRun) holdingRooms(ctx context.Context) []*local.Redis {
	var holding []*local.Redis
	for _, p := range r.roomShards(ctx) {
		if !slices.Contains(holding, p) {
			holding = append(holding, p)
		}
	}
	slices.SortFunc(holding, func(a, b *local.Redis) int { return strings.Compare(a.Name, b.Name) })
	return holding
}

// evictPolicy is the misconfiguration the eviction fault makes.
const evictPolicy = "volatile-random"

// evict misconfigures the primary (on a cluster, a random shard's) for
// outage: maxmemory-policy volatile-random with maxmemory just above what it
// uses, so that keys with a TTL (the rooms') are evicted as writes come in;
// at half the outage the limit drops to 3/4 of what is used, which evicts a
// wave at the next write; then no limit, the policy still evicting, for the
// retries of sends whose dedupe keys went (retryEvicted); then noeviction.
// It takes effect only if one of those retries was acked.
func (r *chaosRun) evict(ctx context.Context, note func(string, ...any), outage time.Duration, rng *rand.Rand) error {
	var node *local.Redis
	if r.cluster {
		// A shard that holds rooms: on one that holds none no send's
		// dedupe key can go, and the fault would prove nothing.
		holding := r.holdingRooms(ctx)
		if len(holding) == 0 {
			return &noEffect{errors.New("no shard holds a room")}
		}
		node = holding[rng.IntN(len(holding))]
	} else {
		primary, err := r.l.Primary(ctx)
		if err != nil {
			return err
		}
		node = primary
	}
	evicted := func() int64 {
		info, err := node.Info(ctx, "stats")
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(info["evicted_keys"], 10, 64)
		return n
	}
	used := func() (int64, error) {
		info, err := node.Info(ctx, "memory")
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(info["used_memory"], 10, 64)
	}
	// The policy is the misconfiguration, and memory fills later: the
	// instances read the policy within seconds and from then on look every
	// send with an id up in the stores, since its dedupe key may go.
	// Random rather than ElastiCache's volatile-lru: LRU spares the keys
	// every send touches (a room's counter, epoch, limit), which are the
	// ones whose loss could reuse a seq. On every node, as a parameter
	// group sets it: an instance may still be reading a node the sentinels
	// demoted a moment ago (after a restart without data, say).
	nodes := r.l.RedisNodes()
	restore := func() error {
		for _, n := range nodes {
			if err := n.SetMaxmemory(ctx, 0, "noeviction"); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range nodes {
		note("%s: maxmemory-policy %s", n.Name, evictPolicy)
		if err := n.SetMaxmemory(ctx, 0, evictPolicy); err != nil {
			return err
		}
	}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.waitEvicting(wait, 1)
	cancel()
	if err != nil {
		note("%v", err)
		if rerr := restore(); rerr != nil {
			return rerr
		}
		return &noEffect{err}
	}
	before := evicted()
	idsBefore, err := dedupeKeys(ctx, node)
	if err != nil {
		return err
	}
	n, err := used()
	if err != nil {
		return err
	}
	note("%s: maxmemory %d (used %d)", node.Name, n+16<<10, n)
	if err := node.SetMaxmemory(ctx, n+16<<10, evictPolicy); err != nil {
		return err
	}
	began := time.Now()
	for tightened := false; time.Since(began) < outage; time.Sleep(100 * time.Millisecond) {
		if !tightened && time.Since(began) > outage/2 {
			// A wave: a quarter of what is used must go, enough that some
			// room's counter goes while its other keys stay.
			if n, err := used(); err == nil {
				note("%s: maxmemory %d", node.Name, n*3/4)
				if err := node.SetMaxmemory(ctx, n*3/4, evictPolicy); err != nil {
					note("%v", err) // the first limit holds; noeviction comes back below
				}
			}
			tightened = true
		}
	}
	// While the instances still look ids up: the retries the eviction is
	// about, of acked sends whose dedupe keys it took.
	// The memory back and the policy still evicting: the rooms reseed as
	// sends come in, and the instances still look every id up.
	if err := node.SetMaxmemory(ctx, 0, evictPolicy); err != nil {
		return err
	}
	retried, gone := r.retryEvicted(ctx, node, idsBefore)
	if err := restore(); err != nil {
		return err
	}
	n = evicted() - before
	note("%s: noeviction, maxmemory 0 again; %d keys evicted, of them %d of the %d dedupe keys there before; %d acked sends retried after their dedupe keys were evicted",
		node.Name, n, gone, len(idsBefore), retried)
	switch {
	case n == 0:
		return &noEffect{errors.New("no key evicted")}
	case retried == 0:
		return &noEffect{errors.New("no retry met an evicted dedupe key")}
	}
	return nil
}

// maxEvictedRetries bounds the retries of one eviction fault.
const maxEvictedRetries = 20

// retryEvicted has honest users send again, with the same id and text, up
// to maxEvictedRetries of their acked sends whose dedupe keys were on node
// (idsBefore) and are gone now, in rooms they are still in: the retry of
// an acked send whose ack was lost, at the moment the dedupe key cannot
// answer it. The checker holds each to one row (acked-stored-once). It
// returns how many were acked (a not_joined refusal, racing a leave, does
// not count) and how many of the dedupe keys were gone.
func (r *chaosRun) retryEvicted(ctx context.Context, node *local.Redis, idsBefore []dedupeKey) (retried, gone int) {
	c := redis.NewClient(&redis.Options{Addr: node.Addr(), MaxRetries: -1})
	defer c.Close()
	users := map[string]*chaosUser{}
	for _, u := range r.users {
		users[u.name] = u
	}
	// intact waits a while (10 s in all) for a room's state to be whole
	// again, reseeded by the sends after the eviction.
	deadline := time.Now().Add(10 * time.Second)
	whole := map[string]bool{}
	intact := func(prefix string) bool {
		for !whole[prefix] && time.Now().Before(deadline) {
			state, err := c.MGet(ctx, prefix+":seq", prefix+":epoch", prefix+":limit", prefix+":replid").Result()
			if whole[prefix] = err == nil && !slices.Contains(state, nil); !whole[prefix] {
				time.Sleep(100 * time.Millisecond)
			}
		}
		return whole[prefix]
	}
	for _, k := range idsBefore {
		if n, err := c.Exists(ctx, k.key).Result(); err != nil || n != 0 {
			continue // still there (or the slot moved): no eviction to meet
		}
		gone++
		u := users[k.user]
		if u == nil || retried == maxEvictedRetries {
			continue
		}
		u.mu.Lock()
		text, acked := u.acked[k.room+"/"+k.id]
		joined := u.joined[k.room]
		u.mu.Unlock()
		if !acked || !joined {
			continue
		}
		// Only once the room's state is whole: a room missing a key is
		// reseeded, and a reseed has every missing dedupe key looked up
		// anyway. So is a room reseeded in the last RecheckWindow (5
		// minutes: after the eviction, or any failover or slot move of the
		// run) while its recheck key lasts; that key has a TTL, so the
		// policy may evict it like any other: this takes it, and leaves the
		// lookup of the evicting policy the one thing that answers the retry.
		if !intact(k.prefix) {
			continue
		}
		if err := c.Del(ctx, k.prefix+":recheck").Err(); err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := u.client().SendID(sctx, k.room, k.id, text)
		cancel()
		if err == nil {
			retried++
			r.count(r.ops, "acked send retried after its dedupe key was evicted")
		}
	}
	return retried, gone
}

// dedupeKey is a send's dedupe key in Redis and what it names; prefix is
// its room's keys' (app/broker's layout).
type dedupeKey struct{ key, prefix, room, user, id string }

// dedupeKeys lists the chaos rooms' dedupe keys on node: chat:{<room>}:id:…
// on one Redis, chat:{<partition>}:r:<room>:id:… on a cluster, each ending
// in <len(user)>:<user>:<id> (app/broker's layout).
func dedupeKeys(ctx context.Context, node *local.Redis) ([]dedupeKey, error) {
	c := redis.NewClient(&redis.Options{Addr: node.Addr(), MaxRetries: -1})
	defer c.Close()
	var out []dedupeKey
	iter := c.Scan(ctx, 0, "chat:*chaos-*:id:*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		i := strings.Index(key, ":id:")
		prefix := key[:i]
		room := prefix
		if j := strings.Index(room, ":r:"); j >= 0 {
			room = room[j+3:]
		} else {
			room = strings.Trim(strings.TrimPrefix(room, "chat:"), "{}")
		}
		n, rest, ok := strings.Cut(key[i+4:], ":")
		size, err := strconv.Atoi(n)
		if !ok || err != nil || len(rest) < size+1 {
			continue
		}
		out = append(out, dedupeKey{key: key, prefix: prefix, room: room, user: rest[:size], id: rest[size+1:]})
	}
	return out, iter.Err()
}

// waitEvicting waits until every instance that answers reports
// chat_redis_evicting = want.
func (r *chaosRun) waitEvicting(ctx context.Context, want float64) error {
	for {
		var behind []string
		for _, c := range r.l.Chats {
			if v, err := readMetric(c.URL(), "chat_redis_evicting"); err == nil && v != want {
				behind = append(behind, c.Name)
			}
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v not reporting chat_redis_evicting %v: %w", behind, want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// noEffect: the fault did not take effect (the sentinels refused the
// failover, no key was evicted); it does not count.
type noEffect struct{ err error }

func (e *noEffect) Error() string { return "no effect: " + e.err.Error() }

// settle waits until every instance is ready again after the last fault.
func (r *chaosRun) settle() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range r.l.Chats {
		if err := c.WaitReady(ctx); err != nil {
			r.t.Errorf("after the faults: %v", err)
		}
	}
}

func (r *chaosRun) closeUsers() {
	for _, u := range r.users {
		if cl := u.client(); cl != nil {
			cl.Close()
		}
		u.reader.Wait()
	}
}

// converge waits, up to within, until every user has seen each room it is
// in up to the newest acked seq, and returns where each got to.
func (r *chaosRun) converge(within time.Duration) []chaos.Reached {
	newest := map[string]int64{}
	for _, e := range r.rec.Events() {
		if e.Kind == chaos.Acked {
			newest[e.Room] = max(newest[e.Room], e.Seq)
		}
	}
	deadline := time.Now().Add(within)
	for {
		var reached []chaos.Reached
		behind := 0
		for _, u := range r.users {
			u.mu.Lock()
			for room := range u.joined {
				reached = append(reached, chaos.Reached{Client: u.i, Room: room, Seq: u.seen[room]})
				if u.seen[room] < newest[room] {
					behind++
				}
			}
			u.mu.Unlock()
		}
		if behind == 0 || time.Now().After(deadline) {
			return reached
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// drain waits, up to within, until the persist writers have stored every
// queued message (chat_persist_backlog_messages 0 on every instance) and
// returns the rows of the chaos rooms.
func (r *chaosRun) drain(within time.Duration) []chaos.Stored {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if r.backlog() == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := r.backlog(); n != 0 {
		r.t.Errorf("persist backlog still %v after %s", n, within)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.l.Postgres.URL())
	if err != nil {
		r.t.Fatalf("read the stored messages: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT room, seq, user_id, client_id, body FROM messages WHERE room LIKE 'chaos-%' ORDER BY room, seq`)
	if err != nil {
		r.t.Fatalf("read the stored messages: %v", err)
	}
	var stored []chaos.Stored
	for rows.Next() {
		var s chaos.Stored
		if err := rows.Scan(&s.Room, &s.Seq, &s.User, &s.ID, &s.Text); err != nil {
			r.t.Fatalf("read the stored messages: %v", err)
		}
		stored = append(stored, s)
	}
	if err := rows.Err(); err != nil {
		r.t.Fatalf("read the stored messages: %v", err)
	}
	return stored
}

// backlog is the largest chat_persist_backlog_messages the instances
// report (-1 if one cannot be read).
func (r *chaosRun) backlog() float64 {
	worst := 0.0
	for _, c := range r.l.Chats {
		n, err := readMetric(c.URL(), "chat_persist_backlog_messages")
		if err != nil {
			return -1
		}
		worst = max(worst, n)
	}
	return worst
}

// report prints the run's figures and fails the test with the seed and the
// events around each violation; the whole history goes to a file.
func (r *chaosRun) report(events []chaos.Event, stored []chaos.Stored, vs []chaos.Violation, losses []chaos.Loss, stale []chaos.StaleReturn) {
	kinds := map[chaos.Kind]int{}
	for _, e := range events {
		if e.Kind == chaos.Delivered && e.Conn == 0 {
			kinds[0]++ // deliveries to users
			continue
		}
		kinds[e.Kind]++
	}
	errs := map[string]int{}
	closes := map[int]int{}
	connects := 0
	for _, u := range r.users {
		u.mu.Lock()
		for k, n := range u.errs {
			errs[k] += n
		}
		u.mu.Unlock()
		st := u.client().Stats()
		connects += st.Connects
		for code, n := range st.CloseCodes {
			closes[code] += n
		}
	}
	report.Logf(r.t, "chaos: seed %d: %d honest clients, operations %v; faults %v", r.seed, len(r.users), r.ops, r.faults)
	report.Logf(r.t, "chaos: %d events: %d sends written, %d acks, %d refusals, %d wire deliveries, %d user deliveries, %d gaps announced on the wire; %d rows in Postgres checked; client errors %v; close codes of the last clients %v (%d connects)",
		len(events), kinds[chaos.Sent], kinds[chaos.Acked], kinds[chaos.Refused], kinds[chaos.Delivered], kinds[0], kinds[chaos.Gap], len(stored), errs, closes, connects)
	byFault := map[string]int{}
	for _, l := range losses {
		switch {
		case l.Unacked:
			byFault[l.Fault+" (published, answered internal, never acked)"]++
		case l.Claimed:
			byFault[l.Fault+" (a killed writer's, within the claim delay)"]++
		default:
			byFault[l.Fault]++
		}
	}
	report.Logf(r.t, "chaos: messages lost with Redis as stated (docs/recovery.md), by the fault that lost them: %v", byFault)
	stranded := map[string]int{}
	for _, s := range stale {
		stranded[s.Fault]++
	}
	report.Logf(r.t, "chaos: silent passes over messages a replaced primary alone held until it came back (docs/recovery.md), by the fault that replaced it: %v", stranded)
	report.Logf(r.t, "chaos: violations: %s", chaos.Summary(vs))
	if len(vs) == 0 {
		return
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("switchboard-chaos-%d.history", r.seed))
	var all strings.Builder
	for _, e := range events {
		fmt.Fprintln(&all, e)
	}
	if err := os.WriteFile(path, []byte(all.String()), 0o644); err != nil {
		path = "(not written: " + err.Error() + ")"
	}
	// Every violation, one a line: the report below shows a few of each.
	list := strings.TrimSuffix(path, ".history") + ".violations"
	var lines strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&lines, "%s: %s; events %v\n", v.Invariant, v.Detail, v.Events)
	}
	if err := os.WriteFile(list, []byte(lines.String()), 0o644); err != nil {
		list = "(not written: " + err.Error() + ")"
	}
	r.t.Errorf("chaos: seed %d broke the guarantees (rerun: make chaos SEED=%d); %d violations: %s\nfull history: %s\nevery violation: %s\n%s",
		r.seed, r.seed, len(vs), chaos.Summary(vs), path, list, chaos.Explain(vs, events, 3, 4))
}
