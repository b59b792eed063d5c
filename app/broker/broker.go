// Package broker is Switchboard's Redis layer: it allocates each room's seq,
// keeps a short per-room history, fans messages out to every instance through
// pub/sub and queues them for Postgres on a stream read by a consumer group.
package broker

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

//go:embed publish.lua
var publishSource string

var publishScript = redis.NewScript(publishSource)

// PersistStream is the stream every accepted message is queued on for
// Postgres, on one Redis; a cluster has one per partition (layout.stream).
const PersistStream = "chat:persist"

// ErrOverloaded refuses a send: the persist stream's backlog reached its cap,
// so accepting more could lose acked messages in a Redis failure. Nothing
// was kept.
var ErrOverloaded = errors.New("overloaded: the queue to Postgres is full")

// ErrNotReplicated: fewer than Options.MinReplicas replicas were online, so
// nothing was written, or they did not confirm the message in time: then it
// may or may not survive a failover, and a retry with the same id is
// deduplicated.
var ErrNotReplicated = errors.New("not confirmed by enough replicas")

// ErrNoSeqs refuses a send to a room that must reserve seqs in Postgres
// first (a new room, or one whose Redis state was lost) while Postgres does
// not answer: seqs handed out without a durable reservation could be handed
// out again. Nothing was kept.
var ErrNoSeqs = errors.New("cannot reserve seqs for the room: Postgres unavailable")

// Ledger is the durable side of seq allocation (Postgres): Redis hands out a
// room's seqs only below a limit reserved here first, so a room whose Redis
// state is lost, by a failover, a restart without data or expiry, restarts
// above every seq it ever had, however often that happens.
type Ledger interface {
	// ReserveSeqs returns hi, the top of n new seqs above atLeast and above
	// every earlier reservation of the room; reused tells that the room had
	// seqs before. restart records hi-n as a floor where the room's counter
	// may restart (a reseed): the seqs below it that no message had are
	// then known as skipped, never announced as lost (hub's recovery).
	ReserveSeqs(ctx context.Context, room string, atLeast, n int64, restart bool) (hi int64, reused bool, err error)
	// SentSeq finds the seq a sender's message id was stored under.
	SentSeq(ctx context.Context, room, user, id string) (seq int64, found bool, err error)
	// Fence returns a number above every one it returned before.
	Fence(ctx context.Context) (int64, error)
}

// Options tunes the broker; zero values take the defaults.
type Options struct {
	HistorySize int           // messages kept per room for resume
	DedupeTTL   time.Duration // how long a sender's message id is remembered
	// RoomTTL is how long an idle room's keys live; it is kept longer than
	// DedupeTTL so no dedupe key outlives its room's counter.
	RoomTTL time.Duration
	// BacklogCap bounds the persist stream: past it sends are refused with
	// ErrOverloaded.
	BacklogCap int64
	// MinReplicas > 0 makes every send WAIT for that many replicas, on the
	// connection that ran the script, for up to ReplicaTimeout (default 1s,
	// kept under the client's read timeout: Connect's is 2s).
	MinReplicas    int
	ReplicaTimeout time.Duration
	// Ledger reserves seqs durably; nil keeps reservations in this process,
	// which only suits tests that never lose Redis's data.
	Ledger Ledger
	// SeqBlock is how many seqs one reservation covers (default 10000): a
	// reseed skips at most that many, and a room reserves again every
	// SeqBlock sends, ahead of need, so a Postgres outage does not stop it.
	SeqBlock int64
	// RecheckWindow is how long after a reseed a send whose dedupe key is
	// missing is looked up in Postgres by its id (default 5 minutes): a
	// client's retry of a send the lost state had accepted.
	RecheckWindow time.Duration
	// Partitions is how many partitions a Redis Cluster's rooms are spread
	// over (default 128); one Redis is not partitioned.
	Partitions int
	// Coalesce is how long a send may wait for others to share its run of
	// the publish script, while the recent sends came at more than one in
	// that time (default 0: none waits; sends queued behind a busy
	// pipeline share a run anyway).
	Coalesce time.Duration
}

// Broker talks to one Redis (or a primary with replicas behind one endpoint,
// or a primary found through Sentinel), or to a Redis Cluster.
type Broker struct {
	rdb     redis.UniversalClient
	one     *redis.Client        // rdb, when it is one Redis
	cluster *redis.ClusterClient // rdb, when it is a cluster
	keys    layout
	opts    Options
	pipes   *pipelines
	// evicting: Redis runs a policy that may evict keys (WatchEviction).
	evicting atomic.Bool

	mu    sync.Mutex
	marks []mark // per partition: one on one Redis
	// blocked is one with the read timeout of a read blocking blockFor
	// (see blocking).
	blocked  *redis.Client
	blockFor time.Duration
}

// mark is where the instance last wrote a partition: the primary that held
// it and the newest fence it has seen there (publish.lua's ARGV 6 and 7).
type mark struct {
	replid string
	fence  int64
}

// saw records the marker a script run on partition p answered with:
// "replid|fence", or the replication id alone on a primary never fenced.
func (b *Broker) saw(p int, marker string) {
	if marker == "" {
		return
	}
	replid, fence, fenced := strings.Cut(marker, "|")
	var n int64
	if fenced { // parsing "" would allocate its error at every script run
		n, _ = strconv.ParseInt(fence, 10, 64)
	}
	b.mu.Lock()
	b.marks[p] = mark{replid: replid, fence: max(b.marks[p].fence, n)}
	b.mu.Unlock()
}

// seen is what saw recorded for partition p, as the script's ARGV 6 and 7.
func (b *Broker) seen(p int) (string, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.marks[p].replid, b.marks[p].fence
}

// Connect dials REDIS_URL: redis://, rediss://, redis+sentinel:// or
// redis+cluster:// (rediss+cluster://). Timeouts are short so that an outage
// turns into errors, not hung connections, and no command is retried
// blindly: a publish whose reply was lost may have run, and running it
// again would store the message twice.
func Connect(url string, opts Options) (*Broker, error) {
	const timeout = 2 * time.Second
	if config.IsCluster(url) {
		c, err := config.ParseRedisCluster(url)
		if err != nil {
			return nil, err
		}
		o := &redis.ClusterOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
			MaxRetries: -1, // redirections (MOVED, ASK) are followed; nothing else is retried
		}
		if c.TLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12} // each node's name is checked
		}
		return New(redis.NewClusterClient(o), opts), nil
	}
	if strings.HasPrefix(url, config.SentinelScheme+"://") {
		s, err := config.ParseRedisSentinel(url)
		if err != nil {
			return nil, err
		}
		return New(redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: s.Master, SentinelAddrs: s.Addrs, SentinelPassword: s.SentinelPassword,
			Username: s.Username, Password: s.Password, DB: s.DB,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, MaxRetries: -1,
		}), opts), nil
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
	o.MaxRetries = -1 // go-redis: -1 disables retries, 0 means the default 3
	return New(redis.NewClient(o), opts), nil
}

// New wraps an existing client: a *redis.Client (one Redis) or a
// *redis.ClusterClient (partitioned).
func New(rdb redis.UniversalClient, opts Options) *Broker {
	if opts.HistorySize <= 0 {
		opts.HistorySize = 1000
	}
	if opts.DedupeTTL <= 0 {
		opts.DedupeTTL = 24 * time.Hour
	}
	if opts.RoomTTL <= 0 {
		opts.RoomTTL = 7 * 24 * time.Hour
	}
	opts.RoomTTL = max(opts.RoomTTL, opts.DedupeTTL+time.Hour) // no dedupe key outlives its room
	if opts.BacklogCap <= 0 {
		opts.BacklogCap = 100_000
	}
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = time.Second
	}
	if opts.Ledger == nil {
		opts.Ledger = &memLedger{}
	}
	if opts.SeqBlock <= 0 {
		opts.SeqBlock = 10_000
	}
	if opts.RecheckWindow <= 0 {
		opts.RecheckWindow = 5 * time.Minute
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 128
	}
	b := &Broker{rdb: rdb, opts: opts}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		b.cluster, b.keys = c, newLayout(opts.Partitions)
	case *redis.Client:
		b.one = c
	default:
		panic(fmt.Sprintf("broker.New: a %T is neither one Redis nor a cluster", rdb))
	}
	b.marks = make([]mark, b.keys.count())
	b.pipes = startPipelines(b)
	return b
}

// Close stops the publish pipelines and releases the connections.
func (b *Broker) Close() error {
	b.pipes.stop()
	return b.rdb.Close()
}

// Redis is the client the broker uses, for what else counts in the same
// Redis (the quotas).
func (b *Broker) Redis() redis.UniversalClient { return b.rdb }

// partitionsKey records a cluster's partition count: instances that
// disagree on it would put a room in two partitions.
const partitionsKey = "chat:partitions"

// ErrPartitionsDiffer: the cluster's rooms are laid out in another number
// of partitions than this instance's.
var ErrPartitionsDiffer = errors.New("REDIS_PARTITIONS differs from the cluster's")

// ClaimPartitions records the partition count in a cluster, or answers
// ErrPartitionsDiffer when another count is recorded there; nil at once on
// one Redis. Any other error is Redis's, and it should be tried again.
func (b *Broker) ClaimPartitions(ctx context.Context) error {
	if b.cluster == nil {
		return nil
	}
	n := strconv.Itoa(b.keys.parts)
	if err := b.rdb.SetNX(ctx, partitionsKey, n, 0).Err(); err != nil {
		return fmt.Errorf("record REDIS_PARTITIONS in the cluster: %w", err)
	}
	got, err := b.rdb.Get(ctx, partitionsKey).Result()
	if err != nil {
		return fmt.Errorf("read the cluster's partition count (%s): %w", partitionsKey, err)
	}
	if got != n {
		return fmt.Errorf("%w: REDIS_PARTITIONS=%s, but the cluster's rooms are laid out in %s partitions (%s): every instance must use the same count", ErrPartitionsDiffer, n, got, partitionsKey)
	}
	return nil
}

// Ping checks that Redis answers: on a cluster, that a primary does. A
// shard failing over leaves the others serving their rooms (its own are
// refused with internal for the seconds it takes), so it is no reason to
// take every instance out of the load balancer; the cluster as a whole
// down is.
func (b *Broker) Ping(ctx context.Context) error {
	if b.cluster == nil {
		return b.rdb.Ping(ctx).Err()
	}
	var answered atomic.Bool
	err := b.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := node.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("%s: %w", node.Options().Addr, err)
		}
		answered.Store(true)
		return nil
	})
	if answered.Load() {
		return nil
	}
	return cmp.Or(err, errors.New("no primary of the cluster is known"))
}

// Accepted is the outcome of Publish.
type Accepted struct {
	Seq       int64
	Epoch     string
	Duplicate bool // the id was seen before: this is the original seq, nothing stored
}

// Script statuses, publish.lua's second result.
const (
	statusAccepted  = 0
	statusDuplicate = 1
	statusReseed    = 2
	statusExhausted = 3
	statusCheckID   = 4
	statusSeeding   = 5
	statusNoSeqs    = 6
	statusFence     = 7
)

// After a failed reservation the room refuses sends for this long, so that
// its senders do not queue on Postgres one after another.
const reserveFailedFor = time.Second

// Publish accepts a message: once it returns without error the message has
// its seq, is in the room's history, queued for Postgres, published and, with
// MinReplicas, on that many replicas.
func (b *Broker) Publish(ctx context.Context, room, user, text, id string, now time.Time) (Accepted, error) {
	pre, post := protocol.MessageFrameParts(room, user, text, id, now)
	hasID := "0"
	if id != "" {
		hasID = "1"
	}
	k, p := b.keys, b.keys.part(room)
	// This message's KEYS and ARGV in publish.lua; execNode adds what a
	// run's messages share.
	keys := k.publishKeys(room, user, id)
	args := []any{k.channel(room), pre, post, now.UnixNano(), hasID, "", "", "", 0, "0", k.payloadRoom(room)}
	const argFloor, argEpoch, argLimit, argRecheck, argChecked = 5, 6, 7, 8, 9
	if id != "" && b.evicting.Load() {
		// The id's dedupe key may have been evicted: ask the stores.
		if dup, found, err := b.sentBefore(ctx, room, user, id); err != nil || found {
			return dup, err
		}
		args[argChecked] = "1"
	}
	// An unseeded room, one out of seqs, a missing dedupe key after a
	// reseed or a primary to fence asks for Postgres first, then the script
	// runs again; the state may change again meanwhile (another failover),
	// so a few rounds are allowed. Waiting for another sender's reseed is
	// not an attempt (ctx bounds it).
	wait := 5 * time.Millisecond
	for attempts, again := 0, false; attempts < 6; attempts, again = attempts+1, true {
		acc, status, headroom, err := b.run(ctx, p, keys, args, again)
		if err != nil {
			return Accepted{}, fmt.Errorf("publish to %s: %w", room, err)
		}
		switch status {
		case statusAccepted:
			if headroom < b.opts.SeqBlock/2 && headroom%256 == 0 {
				// Reserve ahead, every 256 sends while low; a failure
				// (Postgres down) is retried by the next of them.
				_ = b.extend(ctx, room, acc.Epoch, acc.Seq, false)
			}
			return acc, nil
		case statusDuplicate:
			acc.Duplicate = true
			return acc, nil
		case statusCheckID:
			if dup, found, err := b.sentBefore(ctx, room, user, id); err != nil || found {
				return dup, err
			}
			args[argChecked] = "1"
		case statusSeeding:
			// Another sender reserves in Postgres: a round trip at best,
			// a connect timeout at worst, so the wait grows.
			attempts--
			select {
			case <-ctx.Done():
				return Accepted{}, fmt.Errorf("publish to %s: wait for its reseed: %w", room, ctx.Err())
			case <-time.After(wait):
			}
			wait = min(2*wait, 200*time.Millisecond)
		case statusFence:
			if err := b.fence(ctx, p); err != nil {
				return Accepted{}, fmt.Errorf("publish to %s: %w", room, err)
			}
		case statusNoSeqs:
			return Accepted{}, fmt.Errorf("publish to %s: %w (a reservation failed within %s)", room, ErrNoSeqs, reserveFailedFor)
		case statusExhausted:
			if err := b.extend(ctx, room, acc.Epoch, acc.Seq, true); err != nil {
				return Accepted{}, fmt.Errorf("publish to %s: %w", room, err)
			}
		case statusReseed:
			// This send holds the room's seeding lock. acc.Seq is the
			// counter this Redis holds: from before reservations existed,
			// it may be above every reservation.
			hi, reused, err := b.opts.Ledger.ReserveSeqs(ctx, room, acc.Seq, b.opts.SeqBlock, true)
			if err != nil {
				// The lock turns into a short refusal for every sender
				// of the room instead of a queue of them on Postgres.
				_ = b.rdb.Set(context.WithoutCancel(ctx), k.seedingKey(room), "failed", reserveFailedFor).Err()
				return Accepted{}, fmt.Errorf("publish to %s: reseed its counter: %w: %w", room, ErrNoSeqs, err)
			}
			args[argFloor], args[argEpoch], args[argLimit], args[argRecheck] = hi-b.opts.SeqBlock, newEpoch(), hi, 0
			if reused {
				args[argRecheck] = now.Add(b.opts.RecheckWindow).UnixNano()
				if args[argChecked] == "0" {
					if dup, found, err := b.sentBefore(ctx, room, user, id); err != nil || found {
						return dup, err
					}
					args[argChecked] = "1"
				}
			}
		default:
			return Accepted{}, fmt.Errorf("publish to %s: the script answered status %d", room, status)
		}
	}
	return Accepted{}, fmt.Errorf("publish to %s: the room's Redis state kept changing", room)
}

// sentBefore looks a send's id up in the persist backlog, then in Postgres:
// found, it is a retry of a message accepted before Redis lost its dedupe
// key. In that order, because a writer deletes an entry from the backlog
// only after its row is committed: an entry the scan misses is already in
// Postgres for the lookup after it, however the two interleave.
func (b *Broker) sentBefore(ctx context.Context, room, user, id string) (Accepted, bool, error) {
	if id == "" {
		return Accepted{}, false, nil
	}
	if m, found, err := b.pendingSend(ctx, room, user, id); err != nil || found {
		if err != nil {
			return Accepted{}, false, fmt.Errorf("publish to %s: look its id up in the persist backlog: %w", room, err)
		}
		return Accepted{Seq: m.Seq, Duplicate: true}, true, nil
	}
	seq, found, err := b.opts.Ledger.SentSeq(ctx, room, user, id)
	if err != nil {
		return Accepted{}, false, fmt.Errorf("publish to %s: look its id up after a reseed: %w", room, err)
	}
	return Accepted{Seq: seq, Duplicate: true}, found, nil
}

//go:embed extend.lua
var extendSource string

var extendScript = redis.NewScript(extendSource)

// extend reserves the room's next block and raises its limit if the block
// follows the current one, unless the room was reseeded meanwhile (its new
// epoch has a reservation of its own). exhausted: the room has no seqs
// left, so a block that does not follow restarts the room at its floor
// with a new epoch (recorded as a floor) rather than being thrown away.
func (b *Broker) extend(ctx context.Context, room, epoch string, at int64, exhausted bool) error {
	hi, _, err := b.opts.Ledger.ReserveSeqs(ctx, room, at, b.opts.SeqBlock, exhausted)
	if err != nil {
		return fmt.Errorf("reserve more seqs: %w", err)
	}
	restart := ""
	if exhausted {
		restart = newEpoch()
	}
	err = extendScript.Run(ctx, b.rdb, []string{b.keys.epochKey(room), b.keys.limitKey(room), b.keys.seqKey(room)},
		epoch, hi, int(b.opts.RoomTTL.Seconds()), hi-b.opts.SeqBlock, restart).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("raise the seq limit: %w", err)
	}
	return nil
}

//go:embed fence.lua
var fenceSource string

var fenceScript = redis.NewScript(fenceSource)

// fence gives the primary of partition p a fence newer than any it may have
// had: every room of the partition then reseeds above what was reserved
// meanwhile. The fence comes from Postgres, like seqs, so it too needs
// Postgres (as the reseeds it causes do anyway).
func (b *Broker) fence(ctx context.Context, p int) error {
	token, err := b.opts.Ledger.Fence(ctx)
	if err != nil {
		return fmt.Errorf("%w: fence a new primary: %w", ErrNoSeqs, err)
	}
	marker, err := fenceScript.Run(ctx, b.rdb, []string{b.keys.fence(p)}, token).Text()
	if err != nil {
		return fmt.Errorf("fence a new primary: %w", err)
	}
	b.saw(p, marker)
	return nil
}

// newEpoch is 8 random base32 characters.
func newEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// Latest returns the room's newest seq and its epoch: zero for a room never
// written to or whose state Redis lost, no epoch if only that was lost (the
// next send reseeds the room).
func (b *Broker) Latest(ctx context.Context, room string) (protocol.Position, error) {
	v, err := b.rdb.MGet(ctx, b.keys.seqKey(room), b.keys.epochKey(room)).Result()
	if err != nil {
		return protocol.Position{}, fmt.Errorf("latest seq of %s: %w", room, err)
	}
	seq, _ := v[0].(string)
	epoch, _ := v[1].(string)
	if seq == "" {
		return protocol.Position{}, nil
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return protocol.Position{}, fmt.Errorf("latest seq of %s: %q is not a number", room, seq)
	}
	return protocol.Position{Seq: n, Epoch: epoch}, nil
}

// Range returns the oldest limit of the room's kept messages with after <
// seq <= upto, oldest first. The log is bounded, so the result may start
// above after+1.
func (b *Broker) Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Delivery, error) {
	if upto <= after {
		return nil, nil
	}
	msgs, err := b.rdb.XRangeN(ctx, b.keys.logKey(room), strconv.FormatInt(after+1, 10)+"-0", strconv.FormatInt(upto, 10)+"-0", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("history of %s after %d: %w", room, after, err)
	}
	out := make([]protocol.Delivery, 0, len(msgs))
	for _, m := range msgs {
		seq, _, _ := strings.Cut(m.ID, "-")
		n, err := strconv.ParseInt(seq, 10, 64)
		frame, ok := m.Values["f"].(string)
		if err != nil || !ok {
			return nil, fmt.Errorf("history of %s: malformed entry %s", room, m.ID)
		}
		out = append(out, protocol.Delivery{Room: room, Seq: n, Frame: []byte(frame)})
	}
	return out, nil
}
