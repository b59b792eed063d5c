package chaos

import (
	"strings"
	"testing"
)

// h builds a history, numbering the events in order.
func h(es ...Event) []Event {
	for i := range es {
		es[i].Index = i
	}
	return es
}

// The wire view of client 1 on connection 1 and its user's view, in room r.
func joining(since int64) Event {
	return Event{Client: 1, Conn: 1, Kind: Joining, Room: "r", Since: since, HasSince: true}
}
func joinFresh() Event { return Event{Client: 1, Conn: 1, Kind: Joining, Room: "r"} }
func joined(latest int64) Event {
	return Event{Client: 1, Conn: 1, Kind: Joined, Room: "r", Seq: latest}
}
func wire(seq int64) Event {
	return Event{Client: 1, Conn: 1, Kind: Delivered, Room: "r", Seq: seq, User: "u", ID: id(seq)}
}
func user(seq int64) Event {
	return Event{Client: 1, Kind: Delivered, Room: "r", Seq: seq, User: "u", ID: id(seq)}
}

// seen is seq delivered to another client, where nothing was promised: it
// names seq as a message (a hole over seqs nobody ever saw is a reseed's
// skipped range, which a stream passes over in silence).
func seen(seq int64) Event {
	return Event{Client: 3, Conn: 1, Kind: Delivered, Room: "r", Seq: seq, User: "u", ID: id(seq)}
}

// attempt is seq delivered to another client as message msg.
func attempt(seq int64, msg string) Event {
	return Event{Client: 3, Conn: 1, Kind: Delivered, Room: "r", Seq: seq, User: "u", ID: msg}
}

func gap(conn int, from, to int64) Event {
	return Event{Client: 1, Conn: conn, Kind: Gap, Room: "r", From: from, To: to}
}
func sent(msg string) Event {
	return Event{Client: 2, Conn: 1, Kind: Sent, Room: "r", User: "u", ID: msg}
}
func acked(msg string, seq int64) Event {
	return Event{Client: 2, Conn: 1, Kind: Acked, Room: "r", User: "u", ID: msg, Seq: seq}
}
func refused(msg, code string) Event {
	return Event{Client: 2, Conn: 1, Kind: Refused, Room: "r", User: "u", ID: msg, Code: code}
}
func row(seq int64, msg string) Stored { return Stored{Room: "r", Seq: seq, User: "u", ID: msg} }

// rows are the stored rows of seqs from..to, as wire and user deliver them.
func rows(from, to int64) []Stored {
	var rs []Stored
	for seq := from; seq <= to; seq++ {
		rs = append(rs, row(seq, id(seq)))
	}
	return rs
}

// fault is a fault event; kind, if set, records that it took effect.
func fault(text, kind string) Event { return Event{Client: -1, Kind: Fault, Text: text, Code: kind} }

// enough is a run that meets the floors of Floors below.
var enough = []Event{
	sent(id(1)), acked(id(1), 1), joining(0), joined(1), wire(1),
	fault("SIGKILL chat-1", "kill instance"), fault("failover done", "failover redis"),
}

var floors = Floors{Acks: 1, WireDeliveries: 1, Resumes: 1, Faults: []string{"kill instance", "failover redis"}}

// hostileFloors asks for two refusals of user_sends and one poison.
var hostileFloors = Floors{Acks: 1, WireDeliveries: 1, Resumes: 1, Faults: floors.Faults,
	Hostile: map[string]int{"user_sends": 2, "poison nul-text": 1}}

func hostile(what, how string) Event { return Event{Client: 9, Kind: Hostile, Code: what, Text: how} }

func id(seq int64) string { return "m" + string(rune('0'+seq%10)) + string(rune('a'+seq/10)) }

func TestCheckCatchesEachKindOfViolation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  []Event
		stored  []Stored
		reached []Reached
		opts    Options
		want    []string // invariants violated, in order; none for a clean history
	}{
		{
			name:   "a clean history: resume, announced gap, retried send",
			events: h(joining(0), joined(5), wire(1), wire(2), gap(1, 3, 4), wire(5), user(1), user(2), gap(0, 3, 4), user(5), sent(id(6)), refused(id(6), "internal"), sent(id(6)), acked(id(6), 6)),
			stored: []Stored{row(1, id(1)), row(2, id(2)), row(5, id(5)), row(6, id(6))},
		},
		{
			// Seq 4 was published, then refused to its sender (internal: a
			// failover lost it before a replica had it); the retry was
			// stored as 7 after the reseed. The resume passes over 4..6.
			name: "a refused attempt retried under a new seq, passed over",
			events: h(sent(id(7)), attempt(4, id(7)), refused(id(7), "internal"), sent(id(7)), acked(id(7), 7),
				joining(0), joined(7), wire(1), wire(2), wire(3), wire(7)),
			stored: []Stored{row(1, id(1)), row(2, id(2)), row(3, id(3)), row(7, id(7))},
		},
		{
			name:   "a message never acked, passed over",
			events: h(sent(id(7)), attempt(4, id(7)), refused(id(7), "internal"), joining(0), joined(7), wire(1), wire(2), wire(3), seen(7), wire(7)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a duplicate on one connection",
			events: h(joining(0), joined(3), wire(1), wire(2), wire(2), wire(3)),
			want:   []string{StrictlyIncreasing},
		},
		{
			name:   "out of order on one connection: a hole, then a step back",
			events: h(joining(0), joined(3), wire(1), wire(3), wire(2)),
			want:   []string{NoSilentHole, StrictlyIncreasing},
		},
		{
			name:   "a resume that replays at or below since",
			events: h(joining(4), joined(6), wire(4), wire(5), wire(6)),
			want:   []string{StrictlyIncreasing},
		},
		{
			name:   "a silent hole in a resume",
			events: h(seen(2), joining(0), joined(5), wire(1), wire(4), wire(5)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a fresh join whose first message skips one",
			events: h(seen(11), joinFresh(), joined(10), wire(12)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a gap announced only in part",
			events: h(seen(5), joining(0), joined(9), gap(1, 1, 3), wire(7)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a gap announced on another connection does not cover",
			events: h(seen(2), gap(2, 1, 3), joining(0), joined(9), wire(4)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a gap that names no range covers nothing",
			events: h(seen(2), joining(0), joined(9), gap(1, 0, 0), wire(4)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "a gap reported to the user after the message that follows it",
			events: h(joining(0), joined(5), wire(1), wire(2), gap(1, 3, 4), wire(5), user(1), user(2), user(5), gap(0, 3, 4)),
		},
		{
			name: "a hole in the user's view the client did not report",
			events: h(seen(4), joining(0), joined(5), wire(1), wire(2), gap(1, 3, 4), wire(5), Event{Client: 1, Conn: 1, Kind: Gap, Room: "other", From: 4, To: 4},
				user(1), user(2), user(5), gap(0, 3, 3), Event{Client: 1, Kind: Gap, Room: "other", From: 4, To: 4}),
			want: []string{NoSilentHole},
		},
		{
			name:   "a message inside a gap announced before it on the wire",
			events: h(joining(0), joined(5), gap(1, 1, 3), wire(2), wire(4)),
			want:   []string{StrictlyIncreasing},
		},
		{
			name:   "the user's view silently misses the start of its membership",
			events: h(joinFresh(), joined(3), wire(4), wire(5), user(5)),
			want:   []string{NoSilentHole},
		},
		{
			name:   "the user handed a message no connection delivered",
			events: h(joinFresh(), joined(3), wire(4), user(4), user(5)),
			want:   []string{UserFromWire},
		},
		{
			name:   "the user told of a gap for a message the wire delivered",
			events: h(joinFresh(), joined(3), wire(4), wire(5), user(4), gap(0, 5, 5)),
			want:   []string{UserFromWire},
		},
		{
			name:   "a wire gap filled from the history API",
			events: h(joining(0), joined(4), gap(1, 1, 3), wire(4), user(1), user(2), user(3), user(4)),
		},
		{
			name:   "recovery announces a gap instead of reading a Postgres page",
			events: h(joining(0), joined(6), gap(1, 1, 3), wire(4), wire(5), wire(6), gap(0, 1, 3), user(4), user(5), user(6)),
			stored: rows(1, 6),
			opts:   Options{RecoveryLimit: 10_000},
			want:   []string{GapCoversStored, GapCoversStored},
		},
		{
			name:   "the oldest part of a catch-up longer than the recovery limit",
			events: h(joining(0), joined(6), gap(1, 1, 3), wire(4), wire(5), wire(6)),
			stored: rows(1, 6),
			opts:   Options{RecoveryLimit: 3},
		},
		{
			name:   "a gap past the oldest part of a catch-up longer than the recovery limit",
			events: h(joining(0), joined(6), gap(1, 1, 4), wire(5), wire(6)),
			stored: rows(1, 6),
			opts:   Options{RecoveryLimit: 3},
			want:   []string{GapCoversStored},
		},
		{
			name: "a seq reused after eviction",
			events: h(sent("a"), acked("a", 5), fault("maxmemory-policy volatile-lru", "evict redis keys"), sent("b"), acked("b", 5),
				Event{Client: 3, Conn: 1, Kind: Delivered, Room: "r", Seq: 5, User: "u", ID: "b"}),
			stored: []Stored{row(5, "a")},
			want:   []string{OneMessagePerSeq, AckedStoredOnce},
		},
		{
			name: "a resume after a Postgres outage told a gap for the persist backlog",
			events: h(sent(id(5)), fault("stop Postgres", ""), acked(id(5), 5), sent(id(6)), acked(id(6), 6), fault("Postgres started again", "stop postgres"),
				joining(4), joined(6), gap(1, 5, 6)),
			stored: rows(1, 6),
			opts:   Options{RecoveryLimit: 10_000},
			want:   []string{GapCoversStored},
		},
		{
			name: "an empty run",
			opts: Options{Floors: floors},
			want: []string{Vacuous},
		},
		{
			name:   "a run without faults",
			events: h(enough[:5]...),
			stored: rows(1, 1),
			opts:   Options{Floors: floors},
			want:   []string{Vacuous},
		},
		{
			name:   "a run whose failover was refused",
			events: h(append(enough[:6:6], fault("SENTINEL FAILOVER", ""), fault("failover refused: NOGOODSLAVE", ""))...),
			stored: rows(1, 1),
			opts:   Options{Floors: floors},
			want:   []string{Vacuous},
		},
		{
			name:   "a run that meets the floors",
			events: h(append([]Event(nil), enough...)...),
			stored: rows(1, 1),
			opts:   Options{Floors: floors},
		},
		{
			name: "hostile refusals meet their floors",
			events: h(append(append([]Event(nil), enough...),
				hostile("user_sends", "rate_limited"), hostile("user_sends", "rate_limited"), hostile("poison nul-text", "bad_request"),
				Event{Client: 9, Conn: 1, Kind: Refused, Room: "r", ID: "f-1", Code: "rate_limited", Quota: "user_sends"})...),
			stored: rows(1, 1),
			opts:   Options{Floors: hostileFloors, Hostile: []int{9}},
		},
		{
			name:   "hostile clients that did nothing",
			events: h(append([]Event(nil), enough...)...),
			stored: rows(1, 1),
			opts:   Options{Floors: hostileFloors, Hostile: []int{9}},
			want:   []string{Vacuous},
		},
		{
			name:   "one hostile kind refused too rarely",
			events: h(append(append([]Event(nil), enough...), hostile("user_sends", "rate_limited"), hostile("poison nul-text", "bad_request"))...),
			stored: rows(1, 1),
			opts:   Options{Floors: hostileFloors, Hostile: []int{9}},
			want:   []string{Vacuous},
		},
		{
			name:   "a poison acked",
			events: h(Event{Client: 9, Kind: Breach, Code: "poison nul-text", Text: "acked with seq 4"}),
			opts:   Options{Hostile: []int{9}},
			want:   []string{PoisonRefused},
		},
		{
			name:   "an honest client refused by a quota",
			events: h(sent("a"), Event{Client: 2, Conn: 1, Kind: Refused, Room: "r", User: "u", ID: "a", Code: "rate_limited", Quota: "user_sends"}),
			opts:   Options{Hostile: []int{9}},
			want:   []string{HonestUnthrottled},
		},
		{
			name:   "an honest client refused per connection, without a quota",
			events: h(sent("a"), refused("a", "rate_limited")),
			opts:   Options{Hostile: []int{9}},
		},
		{
			name:   "after a leave nothing is promised",
			events: h(joining(0), joined(2), wire(1), Event{Client: 1, Conn: 1, Kind: Leaving, Room: "r"}, wire(7), wire(3)),
		},
		{
			name:   "two messages with one seq seen by two members",
			events: h(joining(0), joined(1), wire(1), Event{Client: 3, Conn: 1, Kind: Delivered, Room: "r", Seq: 1, User: "v", ID: "other"}),
			want:   []string{OneMessagePerSeq},
		},
		{
			name:   "an acked seq that Postgres holds for another message",
			events: h(sent("a"), acked("a", 7)),
			stored: []Stored{row(7, "b")},
			want:   []string{OneMessagePerSeq, AckedStoredOnce},
		},
		{
			name:   "an acked message missing from Postgres",
			events: h(sent("a"), acked("a", 1)),
			want:   []string{AckedStoredOnce},
		},
		{
			name:   "an acked message stored twice",
			events: h(sent("a"), acked("a", 1)),
			stored: []Stored{row(1, "a"), row(2, "a")},
			want:   []string{AckedStoredOnce},
		},
		{
			name:   "one id acked with two seqs",
			events: h(sent("a"), acked("a", 1), sent("a"), acked("a", 2)),
			stored: []Stored{row(1, "a")},
			want:   []string{AckedStoredOnce},
		},
		{
			name:   "a send refused internal, retried and stored twice",
			events: h(sent("a"), refused("a", "internal"), sent("a"), acked("a", 2)),
			stored: []Stored{row(1, "a"), row(2, "a")},
			want:   []string{RetriedStoredOnce},
		},
		{
			name:   "a send refused internal, retried, acked and lost",
			events: h(sent("a"), refused("a", "internal"), sent("a"), acked("a", 2)),
			want:   []string{RetriedStoredOnce},
		},
		{
			name:   "a send never acked may be lost",
			events: h(sent("a"), refused("a", "internal")),
		},
		{
			name:    "a member that stops short of the newest acked message",
			events:  h(sent("a"), acked("a", 3)),
			stored:  []Stored{row(3, "a")},
			reached: []Reached{{Client: 1, Room: "r", Seq: 2}},
			want:    []string{Converged},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := Check(tc.events, tc.stored, tc.reached, tc.opts)
			var got []string
			for _, v := range vs {
				got = append(got, v.Invariant)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("violations %v, want %v:\n%s", got, tc.want, Explain(vs, tc.events, 5, 3))
			}
		})
	}
}

// A report shows the offending events and their neighbours, marked, and
// caps what it prints per invariant.
func TestExplainShowsTheEventsAroundAViolation(t *testing.T) {
	events := h(joining(0), joined(9), wire(1), wire(2), wire(3), wire(5), wire(6), wire(7), wire(8), wire(9))
	for i := 10; i < 20; i++ {
		events = append(events, Event{Index: i, Client: 1, Conn: 1, Kind: Delivered, Room: "r", Seq: 1, User: "u", ID: id(1)})
	}
	events = append(events[:4], append([]Event{{Index: 4, Kind: Fault, Text: "kill instance chat-2"}}, events[4:]...)...)
	events = append(events, seen(4))
	for i := range events {
		events[i].Index = i
	}
	vs := Check(events, nil, nil, Options{})
	out := Explain(vs, events, 1, 1)
	for _, want := range []string{
		"   #4 00:00:00.000 FAULT kill instance chat-2",
		"no-silent-hole: client 1 conn 1 in r: seqs 4..4 skipped",
		" > #5 ", " > #6 ", "   #7 ",
		"strictly-increasing: 9 more not shown",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "#1 ") {
		t.Errorf("report shows events far from the violation:\n%s", out)
	}
	if got := Summary(vs); !strings.Contains(got, "no-silent-hole 1") || !strings.Contains(got, "strictly-increasing 10") {
		t.Errorf("summary %q", got)
	}
}
