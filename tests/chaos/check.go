package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// The invariants the checker proves.
const (
	// Every acked message is in Postgres exactly once, under its acked seq.
	AckedStoredOnce = "acked-stored-once"
	// A member's stream of a room never repeats or goes back.
	StrictlyIncreasing = "strictly-increasing"
	// A member's stream of a room skips only seqs announced as a gap.
	NoSilentHole = "no-silent-hole"
	// A (room, seq) pair names one message, across every observer.
	OneMessagePerSeq = "one-message-per-seq"
	// A send refused with internal and retried with its id is stored once.
	RetriedStoredOnce = "retried-stored-once"
	// A member connected at the end reaches the room's newest acked seq.
	Converged = "converged"
	// A gap announced to a member (on the wire) or reported to a user
	// names no message Postgres holds at the end, unless the message is
	// older than the newest RecoveryLimit messages of the room when the
	// gap came: the oldest part of a catch-up longer than the limit.
	GapCoversStored = "gap-covers-stored"
	// What a user is handed came from the wire: each message was delivered
	// to its client, or fetched for a gap announced to it, and each gap
	// reported lies within gaps announced to it.
	UserFromWire = "user-from-wire"
	// Poison (NUL in a send's text or id, invalid JSON, a frame past
	// MAX_MESSAGE_BYTES, a token whose sub holds NUL) is refused: never
	// acked, never upgraded.
	PoisonRefused = "poison-refused"
	// No client but the hostile ones (Options.Hostile) is refused by a
	// quota: an error frame naming one, or a 429 the balancer logged. The
	// hostile clients' floods must not spend anyone else's allowance.
	HonestUnthrottled = "honest-unthrottled"
	// The run did the minimum work (Floors) that makes passing mean something.
	Vacuous = "vacuous"
)

// Invariants lists them in the order reports use.
var Invariants = []string{AckedStoredOnce, StrictlyIncreasing, NoSilentHole, OneMessagePerSeq, RetriedStoredOnce, Converged, GapCoversStored, UserFromWire,
	PoisonRefused, HonestUnthrottled, Vacuous}

// Violation is one broken invariant with the events that show it.
type Violation struct {
	Invariant string
	Detail    string
	Events    []int // indices into the history
}

// Reached is, at the end, the newest seq a client's user has seen in a
// room it is still in.
type Reached struct {
	Client int
	Room   string
	Seq    int64
}

// Options are what Check needs besides the history.
type Options struct {
	// RecoveryLimit is the server's RECOVERY_LIMIT: only a message older
	// than a room's newest RecoveryLimit messages may be announced as a gap
	// while Postgres holds it. 0: never.
	RecoveryLimit int64
	// Floors is the least work a run must show (zero: none required).
	Floors Floors
	// Unreplicated names the instances that ack without waiting for a
	// replica (REDIS_MIN_REPLICAS=0): a failover may lose what they acked,
	// or strand it on the replaced primary until that comes back.
	Unreplicated []string
	// Hostile are the clients that attack on purpose (floods past the
	// quotas, poison, reconnect storms). What they sent is held to every
	// invariant like anyone's (an acked message is one), but only they may
	// be refused by a quota.
	Hostile []int
}

// Floors are the minimum a run must have done for its pass to mean
// anything: without acks nothing is promised, without faults nothing is
// tested. Gaps are not required: a server that never needs one is fine.
type Floors struct {
	Acks           int      // acks received
	WireDeliveries int      // messages delivered on the wire
	Resumes        int      // joins with since written on the wire
	Faults         []string // kinds of fault each injected successfully at least once
	// Hostile: what hostile clients attempted (a quota's name, "poison
	// <kind>") → the least number of times it must have been refused as it
	// should be (Hostile events): a run whose attacks never reached a limit
	// proves nothing about the limits.
	Hostile map[string]int
}

// Check proves the invariants over a recorded history, the rows Postgres
// holds at the end and where the members still connected got to.
func Check(events []Event, stored []Stored, reached []Reached, o Options) []Violation {
	lost := map[seqKey]bool{}
	for _, l := range Losses(events, stored, o) {
		lost[seqKey{l.Room, l.Seq}] = true
	}
	streamVs, _ := checkStreams(events, silence(events, stored, lost, o))
	var vs []Violation
	vs = append(vs, streamVs...)
	vs = append(vs, checkIdentity(events, stored)...)
	vs = append(vs, checkStored(events, stored, lost)...)
	vs = append(vs, checkConverged(events, reached)...)
	vs = append(vs, checkGaps(events, stored, o.RecoveryLimit)...)
	vs = append(vs, checkUserFromWire(events)...)
	vs = append(vs, checkHostile(events, o.Hostile)...)
	vs = append(vs, checkFloors(events, o.Floors)...)
	return vs
}

// StaleReturns lists the streams' silent passes that Check excuses as a
// replaced primary's return (loss.go), one per pass.
func StaleReturns(events []Event, stored []Stored, o Options) []StaleReturn {
	lost := map[seqKey]bool{}
	for _, l := range Losses(events, stored, o) {
		lost[seqKey{l.Room, l.Seq}] = true
	}
	_, excused := checkStreams(events, silence(events, stored, lost, o))
	return excused
}

type streamKey struct {
	client, conn int
	room         string
}

type span struct{ from, to int64 }

// stream is one member's view of one room: a membership on a connection
// (from joined to leave or the next joined), or the user's whole view.
type stream struct {
	active  bool
	prev    int64 // newest seq seen
	prevEv  int
	since   *int64 // the since of the join being answered
	gaps    []span
	gapEvs  []int
	started bool // the user's view has had its first message (the wire: always)
}

func (s *stream) covered(from, to int64) bool { return within(s.gaps, from, to) }

// within reports whether the spans cover from..to.
func within(spans []span, from, to int64) bool {
	next := from
	for next <= to {
		i := slices.IndexFunc(spans, func(g span) bool { return g.from <= next && next <= g.to })
		if i < 0 {
			return false
		}
		next = spans[i].to + 1
	}
	return true
}

// checkStreams proves StrictlyIncreasing and NoSilentHole on every
// membership of every connection, and on each user's view of each room.
//
// The wire is held strictly: a membership starts at its since (or at the
// joined seq without one), a hole must be announced before the message
// after it, and an announced gap moves the stream past its range (the
// server sends it in its place in the order, so a message inside it
// afterwards goes back).
//
// A user gets messages and gaps on two channels, whose relative order the
// recording cannot keep, so there a gap reported at any time covers. Its
// view is one stream per room for the whole run (the harness resumes a
// room from the user's last seq), which starts where the client's latest
// join before its first message stood: it may not silently miss the
// start either. checkUserFromWire ties what it holds to the wire.
func checkStreams(events []Event, holes *holes) ([]Violation, []StaleReturn) {
	var vs []Violation
	var excused []StaleReturn
	// passable tells whether e may follow from..to unannounced, listing a
	// replaced primary's return.
	passable := func(e Event, from, to int64) bool {
		if holes.silent(e.Room, from, to) {
			return true
		}
		fault, ok := holes.stranded(e, from, to)
		if ok {
			excused = append(excused, StaleReturn{e.Room, from, to, e.Index, fault})
		}
		return ok
	}
	streams := map[streamKey]*stream{}
	joinedAt := map[streamKey]int64{} // (client, 0, room) → the position of its latest join on the wire
	reported := map[streamKey][]span{}
	for _, e := range events {
		if e.Kind == Gap && e.Conn == 0 {
			k := streamKey{e.Client, 0, e.Room}
			reported[k] = append(reported[k], span{e.From, e.To})
		}
	}
	for _, e := range events {
		k := streamKey{e.Client, e.Conn, e.Room}
		s := streams[k]
		if s == nil {
			s = &stream{gaps: reported[k]}
			streams[k] = s
		}
		if e.Conn == 0 {
			// The user's view is one stream per room for the whole run:
			// the harness resumes a room it left from the client's last seq.
			s.active = true
		}
		switch e.Kind {
		case Joining:
			if e.Conn > 0 {
				s.since = nil
				if e.HasSince {
					since := e.Since
					s.since = &since
				}
			}
		case Joined:
			if e.Conn == 0 {
				continue
			}
			// Messages of the previous membership end here; the new one
			// starts after since, or after the latest seq without one.
			since := s.since
			*s = stream{active: true, prev: e.Seq, prevEv: e.Index, started: true}
			if since != nil {
				s.prev = *since
			}
			joinedAt[streamKey{e.Client, 0, e.Room}] = s.prev
		case Leaving:
			if e.Conn > 0 {
				s.active = false
			}
		case Gap:
			if s.active && e.Conn > 0 {
				s.gaps = append(s.gaps, span{e.From, e.To})
				s.gapEvs = append(s.gapEvs, e.Index)
				if e.To > s.prev {
					s.prev, s.prevEv = e.To, e.Index
				}
			}
		case Delivered:
			if !s.active {
				continue // after a leave: no promise
			}
			if !s.started {
				// The user's first message: after the latest join's position,
				// or after a gap it was told of. One from an older
				// membership, recorded late, is below it and passes.
				at, ok := joinedAt[k]
				if ok && e.Seq > at+1 && !s.covered(at+1, e.Seq-1) && !passable(e, at+1, e.Seq-1) {
					vs = append(vs, Violation{NoSilentHole,
						fmt.Sprintf("%s: first message %d, the client joined at %d; reported gaps %v", who(e), e.Seq, at, s.gaps), []int{e.Index}})
				}
				s.started, s.prev, s.prevEv = true, e.Seq, e.Index
				continue
			}
			switch {
			case e.Seq <= s.prev:
				vs = append(vs, Violation{StrictlyIncreasing,
					fmt.Sprintf("%s: seq %d after %d", who(e), e.Seq, s.prev), []int{s.prevEv, e.Index}})
			case e.Seq > s.prev+1 && !s.covered(s.prev+1, e.Seq-1) && !passable(e, s.prev+1, e.Seq-1):
				vs = append(vs, Violation{NoSilentHole,
					fmt.Sprintf("%s: seqs %d..%d skipped; announced gaps %v", who(e), s.prev+1, e.Seq-1, s.gaps),
					append(append([]int{}, s.gapEvs...), s.prevEv, e.Index)})
			}
			if e.Seq > s.prev {
				s.prev, s.prevEv = e.Seq, e.Index
			}
		}
	}
	return vs, excused
}

// holes says which holes a stream may pass over without a gap: those in
// which no seq was ever a message as far as anyone saw (no ack, delivery or
// row: the seqs a reseed skipped), or whose messages are all stated losses
// (the end of an epoch Redis lost, which no store remembers): silent; and,
// listed apart, those whose other messages are stranded on a replaced
// primary when the stream passes over them (stranded).
type holes struct {
	named     map[string][]int64 // room → seqs that were messages, ascending
	lost      map[seqKey]bool
	strands   map[seqKey]stranding
	delivered map[seqKey][]time.Time // on the wire
}

// silence builds the holes of a history. A seq only delivered, whose
// message was acked under another seq, names no message either: the attempt
// was published, then answered internal (a failover took its Redis before a
// replica had it), and the retry stored the message under a new seq after
// the reseed. A stream that passes over the
// attempt's seq misses nothing; one that gets both is checked elsewhere.
func silence(events []Event, stored []Stored, lost map[seqKey]bool, o Options) *holes {
	ackedAt := map[msgKey]int64{}
	confirmed := map[seqKey]bool{} // acked or stored under this seq
	for _, e := range events {
		if e.Kind == Acked {
			ackedAt[msgKey{e.Room, e.User, e.ID}] = e.Seq
			confirmed[seqKey{e.Room, e.Seq}] = true
		}
	}
	for _, r := range stored {
		confirmed[seqKey{r.Room, r.Seq}] = true
	}
	named := map[string][]int64{}
	for _, e := range events {
		if e.Kind != Acked && e.Kind != Delivered {
			continue
		}
		if at, ok := ackedAt[msgKey{e.Room, e.User, e.ID}]; ok && at != e.Seq && !confirmed[seqKey{e.Room, e.Seq}] {
			continue // a refused attempt, retried under seq at
		}
		named[e.Room] = append(named[e.Room], e.Seq)
	}
	for _, r := range stored {
		named[r.Room] = append(named[r.Room], r.Seq)
	}
	for room, seqs := range named {
		slices.Sort(seqs)
		named[room] = slices.Compact(seqs)
	}
	delivered := map[seqKey][]time.Time{}
	for _, e := range events {
		if e.Kind == Delivered && e.Conn > 0 {
			k := seqKey{e.Room, e.Seq}
			delivered[k] = append(delivered[k], e.Time)
		}
	}
	return &holes{named, lost, strandings(events, o), delivered}
}

// messages are the seqs from..to of room that were messages.
func (h *holes) messages(room string, from, to int64) []int64 {
	seqs := h.named[room]
	lo, _ := slices.BinarySearch(seqs, from)
	hi, _ := slices.BinarySearch(seqs, to+1)
	return seqs[lo:hi]
}

func (h *holes) silent(room string, from, to int64) bool {
	for _, seq := range h.messages(room, from, to) {
		if !h.lost[seqKey{room, seq}] {
			return false
		}
	}
	return true
}

// stranded tells whether delivery e may follow from..to unannounced as a
// replaced primary's return, and the fault that stranded the messages:
// each message there not lost is stranded (strandings), e comes after that
// fault began and before the next that could bring the replaced node back,
// and no one was delivered the message after the fault took effect (it was
// readable then) up to e.
func (h *holes) stranded(e Event, from, to int64) (fault string, ok bool) {
	for _, seq := range h.messages(e.Room, from, to) {
		k := seqKey{e.Room, seq}
		if h.lost[k] {
			continue
		}
		st, found := h.strands[k]
		if !found || e.Time.Before(st.fault.start) || !e.Time.Before(st.backAt) {
			return "", false
		}
		if slices.ContainsFunc(h.delivered[k], func(t time.Time) bool { return t.After(st.fault.end) && !t.After(e.Time) }) {
			return "", false
		}
		fault = st.fault.kind
	}
	return fault, fault != ""
}

func who(e Event) string {
	if e.Conn == 0 {
		return fmt.Sprintf("client %d's user in %s", e.Client, e.Room)
	}
	return fmt.Sprintf("client %d conn %d in %s", e.Client, e.Conn, e.Room)
}

type seqKey struct {
	room string
	seq  int64
}

type msgKey struct{ room, user, id string }

// checkIdentity proves OneMessagePerSeq: every observer — deliveries on
// the wire and to users, acks, Postgres — names the same message for a
// (room, seq).
func checkIdentity(events []Event, stored []Stored) []Violation {
	type seen struct {
		who   msgKey
		event int // -1: a Postgres row
	}
	first := map[seqKey]seen{}
	reported := map[seqKey]bool{}
	var vs []Violation
	observe := func(k seqKey, m msgKey, event int, what string) {
		f, ok := first[k]
		if !ok {
			first[k] = seen{m, event}
			return
		}
		if f.who == m || reported[k] {
			return
		}
		reported[k] = true
		var evs []int
		for _, i := range []int{f.event, event} {
			if i >= 0 {
				evs = append(evs, i)
			}
		}
		vs = append(vs, Violation{OneMessagePerSeq,
			fmt.Sprintf("room %s seq %d is %s/%s and, %s, %s/%s", k.room, k.seq, f.who.user, f.who.id, what, m.user, m.id), evs})
	}
	for _, e := range events {
		switch e.Kind {
		case Delivered, Acked:
			observe(seqKey{e.Room, e.Seq}, msgKey{e.Room, e.User, e.ID}, e.Index, "as "+e.Kind.String()+" to "+who(e))
		}
	}
	for _, r := range stored {
		observe(seqKey{r.Room, r.Seq}, msgKey{r.Room, r.User, r.ID}, -1, "in Postgres")
	}
	return vs
}

// checkStored proves AckedStoredOnce and RetriedStoredOnce against the
// rows of the messages table.
func checkStored(events []Event, stored []Stored, lost map[seqKey]bool) []Violation {
	rows := map[msgKey][]Stored{}
	for _, r := range stored {
		k := msgKey{r.Room, r.User, r.ID}
		rows[k] = append(rows[k], r)
	}
	acked := map[msgKey][]Event{}
	internal := map[msgKey][]int{}
	sent := map[msgKey]int{}
	var order []msgKey
	for _, e := range events {
		k := msgKey{e.Room, e.User, e.ID}
		switch e.Kind {
		case Sent:
			if _, ok := sent[k]; !ok {
				sent[k] = e.Index
				order = append(order, k)
			}
		case Acked:
			acked[k] = append(acked[k], e)
		case Refused:
			if e.Code == "internal" {
				internal[k] = append(internal[k], e.Index)
			}
		}
	}
	var vs []Violation
	for _, k := range order {
		rs, as := rows[k], acked[k]
		evs := []int{sent[k]}
		for _, a := range as {
			evs = append(evs, a.Index)
		}
		evs = append(evs, internal[k]...)
		slices.Sort(evs)
		inv := AckedStoredOnce
		if len(internal[k]) > 0 {
			inv = RetriedStoredOnce
		}
		switch {
		case len(rs) > 1:
			vs = append(vs, Violation{inv, fmt.Sprintf("%s/%s in %s stored %d times (seqs %v)", k.user, k.id, k.room, len(rs), seqsOf(rs)), evs})
			continue
		case len(as) == 0:
			continue // never acked: it may or may not have been kept
		case len(rs) == 0 && lost[seqKey{k.room, as[0].Seq}]:
			continue // the stated exception: Losses lists it
		case len(rs) == 0:
			vs = append(vs, Violation{inv, fmt.Sprintf("%s/%s in %s acked with seq %d, not in Postgres", k.user, k.id, k.room, as[0].Seq), evs})
			continue
		}
		for _, a := range as {
			if a.Seq != rs[0].Seq {
				vs = append(vs, Violation{inv, fmt.Sprintf("%s/%s in %s acked with seq %d, stored with seq %d", k.user, k.id, k.room, a.Seq, rs[0].Seq), evs})
				break
			}
		}
	}
	return vs
}

func seqsOf(rs []Stored) []int64 {
	var s []int64
	for _, r := range rs {
		s = append(s, r.Seq)
	}
	return s
}

// checkConverged proves Converged: a member still in a room at the end has
// seen (or been told it cannot see) the room's newest acked message.
func checkConverged(events []Event, reached []Reached) []Violation {
	newest := map[string]Event{}
	for _, e := range events {
		if e.Kind == Acked && e.Seq > newest[e.Room].Seq {
			newest[e.Room] = e
		}
	}
	var vs []Violation
	for _, r := range reached {
		if n, ok := newest[r.Room]; ok && r.Seq < n.Seq {
			vs = append(vs, Violation{Converged,
				fmt.Sprintf("client %d's user in %s reached seq %d, the newest acked is %d", r.Client, r.Room, r.Seq, n.Seq), []int{n.Index}})
		}
	}
	return vs
}

// checkGaps proves GapCoversStored over every gap with a range, on the
// wire and to users. The stated exception is a catch-up longer than the
// recovery limit, whose oldest part is announced: a stored row is excused
// when at least limit stored rows of its room are newer than it and no
// newer than the newest seq observed in the room (acked, delivered or
// joined at) before the gap. The server's catch-up may reach further than
// anything observed yet, so this can refuse a gap the server thought
// legitimate; it is strict on purpose: the guarantee speaks of messages,
// and only what was observed is known to have been one by then.
// ("Data lost with every replica" excuses only rows that are not stored.)
func checkGaps(events []Event, stored []Stored, limit int64) []Violation {
	rows := map[string][]int64{} // room → its stored seqs, ascending
	for _, r := range stored {
		rows[r.Room] = append(rows[r.Room], r.Seq)
	}
	for room, seqs := range rows {
		slices.Sort(seqs)
		rows[room] = slices.Compact(seqs) // a seq stored twice is another invariant's business
	}
	newest := map[string]int64{}
	var vs []Violation
	for _, e := range events {
		switch e.Kind {
		case Acked, Delivered, Joined:
			newest[e.Room] = max(newest[e.Room], e.Seq)
		case Gap:
			if e.To == 0 {
				continue
			}
			seqs := rows[e.Room]
			lo, _ := slices.BinarySearch(seqs, e.From)
			hi, _ := slices.BinarySearch(seqs, e.To+1)
			top, _ := slices.BinarySearch(seqs, newest[e.Room]+1)
			// seqs[i] has top-1-i rows above it up to the newest: excused
			// when that is at least limit.
			if limit > 0 {
				lo = max(lo, top-int(limit))
			}
			if lo >= hi {
				continue
			}
			vs = append(vs, Violation{GapCoversStored,
				fmt.Sprintf("%s: gap %d..%d covers %d stored rows (%s), %d stored rows up to the newest seq seen then (%d), recovery limit %d",
					who(e), e.From, e.To, hi-lo, seqRange(seqs[lo:hi]), top, newest[e.Room], limit), []int{e.Index}})
		}
	}
	return vs
}

// seqRange shows ascending seqs briefly.
func seqRange(seqs []int64) string {
	if len(seqs) == 1 {
		return fmt.Sprintf("seq %d", seqs[0])
	}
	return fmt.Sprintf("seqs %d..%d", seqs[0], seqs[len(seqs)-1])
}

// checkUserFromWire proves UserFromWire: the client library hands its
// user a message only if its connections delivered it, or fetched it for
// a gap announced to them (FillGaps), and reports a gap only within gaps
// announced to them. Otherwise the user's view, which checkStreams holds
// to order, could look right while saying something the server never did.
func checkUserFromWire(events []Event) []Violation {
	type key struct {
		client int
		room   string
	}
	delivered := map[key]map[int64]bool{}
	gaps := map[key][]span{}
	var vs []Violation
	for _, e := range events {
		k := key{e.Client, e.Room}
		switch {
		case e.Kind == Delivered && e.Conn > 0:
			if delivered[k] == nil {
				delivered[k] = map[int64]bool{}
			}
			delivered[k][e.Seq] = true
		case e.Kind == Gap && e.Conn > 0 && e.To > 0:
			gaps[k] = append(gaps[k], span{e.From, e.To})
		case e.Kind == Delivered && e.Conn == 0:
			if !delivered[k][e.Seq] && !within(gaps[k], e.Seq, e.Seq) {
				vs = append(vs, Violation{UserFromWire,
					fmt.Sprintf("%s: handed seq %d, which no connection delivered or was told is a gap", who(e), e.Seq), []int{e.Index}})
			}
		case e.Kind == Gap && e.Conn == 0 && e.To > 0:
			if !within(gaps[k], e.From, e.To) {
				vs = append(vs, Violation{UserFromWire,
					fmt.Sprintf("%s: told of gap %d..%d; its connections were told of %v", who(e), e.From, e.To, gaps[k]), []int{e.Index}})
			}
		}
	}
	return vs
}

// checkHostile proves PoisonRefused (no Breach recorded) and
// HonestUnthrottled (no quota refusal of a client outside hostile).
func checkHostile(events []Event, hostile []int) []Violation {
	var vs []Violation
	for _, e := range events {
		switch {
		case e.Kind == Breach:
			vs = append(vs, Violation{PoisonRefused, fmt.Sprintf("client %d: %s got through: %s", e.Client, e.Code, e.Text), []int{e.Index}})
		case e.Kind == Refused && e.Quota != "" && e.Client >= 0 && !slices.Contains(hostile, e.Client):
			vs = append(vs, Violation{HonestUnthrottled, fmt.Sprintf("%s: refused by quota %s (%s)", who(e), e.Quota, e.Code), []int{e.Index}})
		}
	}
	return vs
}

// HostileRefusals counts the Hostile events by what was refused.
func HostileRefusals(events []Event) map[string]int {
	n := map[string]int{}
	for _, e := range events {
		if e.Kind == Hostile {
			n[e.Code]++
		}
	}
	return n
}

// checkFloors fails a run as Vacuous below any of the floors. A fault
// counts once an event of its kind records that it took effect (Code).
func checkFloors(events []Event, f Floors) []Violation {
	var acks, wire, resumes int
	done := map[string]bool{}
	for _, e := range events {
		switch {
		case e.Kind == Acked:
			acks++
		case e.Kind == Delivered && e.Conn > 0:
			wire++
		case e.Kind == Joining && e.Conn > 0 && e.HasSince:
			resumes++
		case e.Kind == Fault && e.Code != "":
			done[e.Code] = true
		}
	}
	var missing []string
	for _, c := range []struct {
		what      string
		got, want int
	}{{"acks", acks, f.Acks}, {"wire deliveries", wire, f.WireDeliveries}, {"resumes", resumes, f.Resumes}} {
		if c.got < c.want {
			missing = append(missing, fmt.Sprintf("%d %s, want %d", c.got, c.what, c.want))
		}
	}
	for _, kind := range f.Faults {
		if !done[kind] {
			missing = append(missing, "no "+kind+" took effect")
		}
	}
	refused := HostileRefusals(events)
	for _, what := range slices.Sorted(maps.Keys(f.Hostile)) {
		if refused[what] < f.Hostile[what] {
			missing = append(missing, fmt.Sprintf("hostile %s refused %d times, want %d", what, refused[what], f.Hostile[what]))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Violation{{Vacuous, "too little happened to prove anything: " + strings.Join(missing, "; "), nil}}
}

// Summary counts violations by invariant, every invariant listed.
func Summary(vs []Violation) string {
	counts := map[string]int{}
	for _, v := range vs {
		counts[v.Invariant]++
	}
	var parts []string
	for _, inv := range Invariants {
		parts = append(parts, fmt.Sprintf("%s %d", inv, counts[inv]))
	}
	return strings.Join(parts, ", ")
}

// Explain prints up to perInvariant violations of each invariant, each with
// its events and those around them in the same client's stream of the room
// (context events either side): enough to read what happened, not the
// whole history.
func Explain(vs []Violation, events []Event, perInvariant, context int) string {
	var b strings.Builder
	shown := map[string]int{}
	for _, v := range vs {
		shown[v.Invariant]++
		if shown[v.Invariant] > perInvariant {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", v.Invariant, v.Detail)
		for _, i := range neighbourhood(v, events, context) {
			mark := "   "
			if slices.Contains(v.Events, i) {
				mark = " > "
			}
			fmt.Fprintf(&b, "%s%s\n", mark, events[i])
		}
	}
	for _, inv := range Invariants {
		if n := shown[inv] - perInvariant; n > 0 {
			fmt.Fprintf(&b, "%s: %d more not shown\n", inv, n)
		}
	}
	return b.String()
}

// neighbourhood is a violation's events and, for each, the context events
// either side that share its client, connection and room, with the faults
// among them and the last fault before them.
func neighbourhood(v Violation, events []Event, context int) []int {
	set := map[int]bool{}
	for _, i := range v.Events {
		e := events[i]
		var same []int
		for _, o := range events {
			if o.Client == e.Client && o.Conn == e.Conn && o.Room == e.Room && o.Kind != Fault {
				same = append(same, o.Index)
			}
		}
		at, _ := slices.BinarySearch(same, i)
		for _, j := range same[max(0, at-context):min(len(same), at+context+1)] {
			set[j] = true
		}
	}
	first, last := len(events), -1
	for i := range set {
		first, last = min(first, i), max(last, i)
	}
	before := -1
	for _, e := range events[:last+1] {
		switch {
		case e.Kind != Fault:
		case e.Index < first:
			before = e.Index
		default:
			set[e.Index] = true
		}
	}
	if before >= 0 {
		set[before] = true
	}
	out := make([]int, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
