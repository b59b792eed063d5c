package chaos

import (
	"slices"
	"strings"
	"time"

	"github.com/switchboard-dev/switchboard/app/persist"
)

// The one stated exception for acked messages: data lost with every replica
// before a writer stored it. A run injects such losses on purpose (a primary
// wiped while it stays primary; a failover or a restart that drops what an
// instance acked without waiting for a replica), so the checker excuses an
// acked message missing from Postgres only when one of those faults began
// soon enough after its ack to catch it still queued: within LossWindow, or
// later if Postgres was down in between (the queue then waits for it), or
// if an instance was killed while the message was queued (its writer may
// have read it; no other takes it over before ClaimDelay has passed).
// Every excused loss is listed (Losses), never silently dropped; everything
// else missing is a violation. A send answered internal may have been
// published all the same (docs/recovery.md); if no retry of it was acked,
// the same faults explain its seq's loss, timed from a delivery, and
// Losses lists it apart: streams pass over it as over an acked loss.

// LossWindow is how long after its ack a message may still be only in
// Redis when Postgres is up and every writer lives: the writers' linger and
// batch, with margin.
const LossWindow = 5 * time.Second

// ClaimDelay is how long an entry a killed instance's writer had read waits
// before another writer claims it (persist's default ClaimIdle, which the
// chaos instances run with, and the wait for the next claim attempt).
// The writers share one consumer group, so any instance's writer may hold
// any instance's acked message: which instance acked it does not matter.
var ClaimDelay = persist.ClaimDelay(persist.DefaultClaimIdle)

// Fault kinds as the run records them (Event.Code of the fault that took
// effect); a kind ending in WhilePostgresDown also stops Postgres.
const (
	FaultWipe         = "wipe redis primary"
	FaultRedisNoData  = "restart redis without data"
	FaultRestartRedis = "restart redis"
	FaultFailover     = "failover redis"
	FaultStopPostgres = "stop postgres"
	// On a Redis Cluster: a shard's primary SIGKILLed (the cluster promotes
	// its replica), CLUSTER FAILOVER (the replica catches up first, so
	// nothing is lost), slots moved by redis-cli --cluster reshard.
	FaultKillShardPrimary = "kill a redis shard's primary"
	FaultClusterFailover  = "cluster failover"
	FaultReshard          = "reshard redis slots"
	WhilePostgresDown     = " while postgres is down"
)

// faultSpan is one fault from its first note to the event that says it
// took effect (after its undo).
type faultSpan struct {
	kind       string
	start, end time.Time
}

func faultSpans(events []Event) []faultSpan {
	var spans []faultSpan
	var start time.Time
	for _, e := range events {
		if e.Kind != Fault {
			continue
		}
		if start.IsZero() {
			start = e.Time
		}
		if e.Code != "" {
			spans = append(spans, faultSpan{e.Code, start, e.Time})
			start = time.Time{}
		}
	}
	return spans
}

func (f faultSpan) postgresDown() bool {
	return f.kind == FaultStopPostgres || strings.HasSuffix(f.kind, WhilePostgresDown)
}

// loses tells whether the fault loses what instance acked and Redis held
// only on the primary: a wipe loses everything; a failover or a restart
// loses what was not on a replica, which only an instance acking without
// waiting for one (unreplicated) can have acked.
func (f faultSpan) loses(unreplicated bool) bool {
	kind := strings.TrimSuffix(f.kind, WhilePostgresDown)
	switch kind {
	case FaultWipe:
		return true
	case FaultRedisNoData, FaultRestartRedis, FaultFailover, FaultKillShardPrimary:
		return unreplicated
	}
	return false
}

// Loss is a message missing from Postgres that a data-loss fault explains:
// acked, or published and never acked (Unacked).
type Loss struct {
	Room  string
	Seq   int64
	Ack   int // the ack's event; for an unacked message, a delivery's
	Fault string
	// Claimed: the fault began past LossWindow, Postgres up, so only the
	// claim delay of a kill excuses it.
	Claimed bool
	// Unacked: its send was answered internal after the script had
	// published it (members saw it live), and no retry was acked. No
	// store is bound to keep it, but a stream passes over it in silence
	// only as over a stated loss.
	Unacked bool
}

// Losses lists the messages not in Postgres that the stated exception
// covers.
func Losses(events []Event, stored []Stored, o Options) []Loss {
	rows := map[seqKey]bool{}
	for _, r := range stored {
		rows[seqKey{r.Room, r.Seq}] = true
	}
	m := newLossModel(events, o)
	var out []Loss
	seen := map[seqKey]bool{}
	for _, e := range events {
		k := seqKey{e.Room, e.Seq}
		held, unreplicated := m.held(e)
		if !held || rows[k] || seen[k] {
			continue
		}
		if i, claimed, ok := m.lostBy(e, unreplicated); ok {
			seen[k] = true
			out = append(out, Loss{e.Room, e.Seq, e.Index, m.spans[i].kind, claimed, e.Kind == Delivered})
		}
	}
	return out
}

// lossModel is what decides whether a fault could catch an acked message
// still only in Redis: the faults, each message's first send, the kills.
type lossModel struct {
	spans  []faultSpan
	sentAt map[msgKey]time.Time // a message's first send: Redis cannot have it before
	acked  map[msgKey]bool      // under any seq
	kills  []time.Time
	unrep  []string
}

func newLossModel(events []Event, o Options) *lossModel {
	m := &lossModel{spans: faultSpans(events), sentAt: map[msgKey]time.Time{}, acked: map[msgKey]bool{}, unrep: o.Unreplicated}
	for _, e := range events {
		k := msgKey{e.Room, e.User, e.ID}
		switch {
		case e.Kind == Sent && m.sentAt[k].IsZero():
			m.sentAt[k] = e.Time
		case e.Kind == Acked:
			m.acked[k] = true
		case e.Kind == Fault && e.Instance != "":
			m.kills = append(m.kills, e.Time)
		}
	}
	return m
}

// held tells whether e shows Redis holding its seq's message at e's time,
// a message a fault may then have lost: an ack, or a delivery of a message
// no ack ever vouched for (a send answered internal after its script ran,
// whose sender gave up). It says too whether the message needed no
// replica's loss to be lost: an ack from an unreplicated instance, and
// every unacked message, which no replica confirmed.
func (m *lossModel) held(e Event) (held, unreplicated bool) {
	switch {
	case e.Kind == Acked:
		return true, m.unreplicated(e)
	case e.Kind == Delivered && !m.acked[msgKey{e.Room, e.User, e.ID}]:
		return true, true
	}
	return false, false
}

// unreplicated tells whether ack a came from an instance that does not wait
// for a replica. An ack of a history that does not name its instance (older
// than the "on <instance>" suffix) is not: assuming it would excuse too much.
func (m *lossModel) unreplicated(a Event) bool {
	return slices.Contains(m.unrep, a.Instance)
}

// lostBy finds the data-loss fault (its index in spans) that explains ack
// a's message missing, and whether only a kill's claim delay does.
func (m *lossModel) lostBy(a Event, unreplicated bool) (fault int, claimed, ok bool) {
	queued := queuedUntil(a.Time, m.sentAt[msgKey{a.Room, a.User, a.ID}], m.kills)
	return lostBy(a, queued, m.spans, unreplicated)
}

// queuedUntil is how long a message acked at ack (first sent at sent) may be
// only in Redis while Postgres is up: LossWindow after its ack, or, if an
// instance was killed between its send and then (its writer may have read
// the message and died holding it), LossWindow after ClaimDelay has passed
// from the latest such kill.
func queuedUntil(ack, sent time.Time, kills []time.Time) time.Time {
	until := ack.Add(LossWindow)
	if sent.IsZero() {
		sent = ack
	}
	for _, k := range kills {
		if t := k.Add(ClaimDelay + LossWindow); !k.Before(sent) && !k.After(ack.Add(LossWindow)) && t.After(until) {
			until = t
		}
	}
	return until
}

// lostBy finds the data-loss fault that explains ack a's message missing,
// the message being only in Redis until queued unless Postgres went down,
// and whether only a kill's claim delay (queued past LossWindow) does.
func lostBy(a Event, queued time.Time, spans []faultSpan, unreplicated bool) (fault int, claimed, ok bool) {
	pgDown := false
	for i, f := range spans {
		if !f.end.After(a.Time) {
			continue
		}
		if f.loses(unreplicated) && (!f.start.After(queued) || pgDown) {
			return i, !pgDown && f.start.Sub(a.Time) > LossWindow, true
		}
		if f.postgresDown() {
			pgDown = true
		}
		if f.start.After(queued) && !pgDown {
			return 0, false, false
		}
	}
	return 0, false, false
}

// The second stated exception, for a stream rather than for Postgres: a
// replaced primary's return. What an unreplicated instance acked shortly
// before a failover (or a restart of the primary, or a shard primary's
// SIGKILL) may live on the replaced primary alone: no catch-up can read it,
// so the room's new epoch passes over it in silence, as over a loss. Yet the
// replaced node keeps it, and a later fault may make it primary again, so the
// message is delivered and stored after all (docs/recovery.md). A stream's
// silent pass over such a message is excused only between the fault that
// stranded it and the next fault that could bring its node back, and only
// if no one was delivered it in between (then it was readable); each excuse
// is listed (StaleReturns), never silent.
//
// A wipe or a restart without data strands nothing: the node that held the
// message comes back empty (Losses covers what they lose).

// StaleReturn is a stream's silent pass over seqs From..To excused as a
// replaced primary's return.
type StaleReturn struct {
	Room     string
	From, To int64
	Event    int    // the delivery after the pass
	Fault    string // the fault that stranded the messages
}

// strands tells whether the fault can leave the old primary, data and all,
// out of the rotation.
func (f faultSpan) strands() bool {
	switch strings.TrimSuffix(f.kind, WhilePostgresDown) {
	case FaultFailover, FaultRestartRedis, FaultKillShardPrimary:
		return true
	}
	return false
}

// changesPrimary tells whether the fault may promote another node, the
// replaced primary among them.
func (f faultSpan) changesPrimary() bool {
	switch strings.TrimSuffix(f.kind, WhilePostgresDown) {
	case FaultFailover, FaultRestartRedis, FaultRedisNoData, FaultKillShardPrimary, FaultClusterFailover:
		return true
	}
	return false
}

// stranding is when a stream may pass over a stranded message: from the
// start of the fault that stranded it (its first note, which for a fault
// while Postgres is down is the Postgres stop: the history does not say
// when within the span the primary changed) to the start of the next fault
// that changes the primary. It keeps the fault's kind and end: a delivery
// after the end shows the message readable.
type stranding struct {
	fault  faultSpan
	backAt time.Time
}

// strandings finds, for each seq acked by an unreplicated instance (or
// delivered and never acked), the fault that stranded it on the replaced primary: the one that would have
// lost it (Losses' model) if it strands, and a later fault could bring it
// back.
func strandings(events []Event, o Options) map[seqKey]stranding {
	m := newLossModel(events, o)
	out := map[seqKey]stranding{}
	for _, e := range events {
		k := seqKey{e.Room, e.Seq}
		held, unreplicated := m.held(e)
		if _, done := out[k]; done || !held || !unreplicated {
			continue
		}
		i, _, ok := m.lostBy(e, true)
		if !ok || !m.spans[i].strands() {
			continue
		}
		for _, g := range m.spans[i+1:] {
			if g.changesPrimary() {
				out[k] = stranding{m.spans[i], g.start}
				break
			}
		}
	}
	return out
}
