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
// else missing is a violation.

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

// Loss is an acked message missing from Postgres that a data-loss fault
// explains.
type Loss struct {
	Room  string
	Seq   int64
	Ack   int // the ack's event
	Fault string
	// Claimed: the fault began past LossWindow, Postgres up, so only the
	// claim delay of a kill excuses it.
	Claimed bool
}

// Losses lists the acked messages not in Postgres that the stated exception
// covers.
func Losses(events []Event, stored []Stored, o Options) []Loss {
	rows := map[seqKey]bool{}
	for _, r := range stored {
		rows[seqKey{r.Room, r.Seq}] = true
	}
	spans := faultSpans(events)
	sentAt := map[msgKey]time.Time{} // a message's first send: Redis cannot have it before
	var kills []time.Time
	for _, e := range events {
		k := msgKey{e.Room, e.User, e.ID}
		switch {
		case e.Kind == Sent && sentAt[k].IsZero():
			sentAt[k] = e.Time
		case e.Kind == Fault && e.Instance != "":
			kills = append(kills, e.Time)
		}
	}
	var out []Loss
	seen := map[seqKey]bool{}
	for _, e := range events {
		k := seqKey{e.Room, e.Seq}
		if e.Kind != Acked || rows[k] || seen[k] {
			continue
		}
		queued := queuedUntil(e.Time, sentAt[msgKey{e.Room, e.User, e.ID}], kills)
		if f, claimed, ok := lostBy(e, queued, spans, slices.Contains(o.Unreplicated, e.Instance)); ok {
			seen[k] = true
			out = append(out, Loss{e.Room, e.Seq, e.Index, f, claimed})
		}
	}
	return out
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
func lostBy(a Event, queued time.Time, spans []faultSpan, unreplicated bool) (kind string, claimed, ok bool) {
	pgDown := false
	for _, f := range spans {
		if !f.end.After(a.Time) {
			continue
		}
		if f.loses(unreplicated) && (!f.start.After(queued) || pgDown) {
			return f.kind, !pgDown && f.start.Sub(a.Time) > LossWindow, true
		}
		if f.postgresDown() {
			pgDown = true
		}
		if f.start.After(queued) && !pgDown {
			return "", false, false
		}
	}
	return "", false, false
}
