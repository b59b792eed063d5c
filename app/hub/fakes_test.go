package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/app/metrics"
	"github.com/switchboard-dev/switchboard/app/protocol"
)

// The hub's tests run it against in-memory fakes of Redis and Postgres that
// inject faults: calls that fail, calls held until the test lets them go,
// messages pub/sub loses. The real stores are proven in app/server.

var errInjected = errors.New("injected fault")

// gate holds a call until the test opens it; a nil gate lets calls through.
type gate struct {
	entered chan string   // receives the call's name when it starts waiting
	open    chan struct{} // one receive per call let through
}

func newGate() *gate { return &gate{entered: make(chan string, 100), open: make(chan struct{})} }

func (g *gate) pass(name string) {
	if g == nil {
		return
	}
	g.entered <- name
	<-g.open
}

// faults counts down injected failures per call name.
type faults struct {
	mu    sync.Mutex
	left  map[string]int // calls still to fail; -1 fails forever
	calls map[string]int
}

func (f *faults) fail(call string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.left == nil {
		f.left, f.calls = map[string]int{}, map[string]int{}
	}
	f.left[call] = n
}

func (f *faults) check(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.left, f.calls = map[string]int{}, map[string]int{}
	}
	f.calls[call]++
	switch n := f.left[call]; {
	case n < 0:
		return fmt.Errorf("%s: %w", call, errInjected)
	case n > 0:
		f.left[call] = n - 1
		return fmt.Errorf("%s: %w", call, errInjected)
	}
	return nil
}

func (f *faults) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

// world is one room's Redis (counter, epoch, a log of the newest `keep`
// messages, pub/sub with go-redis's resubscription set) and Postgres.
type world struct {
	faults
	h    *Hub
	keep int

	mu       sync.Mutex
	seq      int64
	epoch    string
	log      map[string][]protocol.Delivery
	stored   map[string]map[int64]protocol.Message
	backlog  map[string]map[int64]protocol.Message // accepted, not stored yet
	floors   map[string][]int64                    // where reseeds restarted the counter
	floorsAt time.Time                             // when the last floor was recorded
	set      map[string]bool                       // go-redis's channels: resubscribed after a reconnect
	live     map[string]bool                       // what Redis delivers to now
	adds     []string                              // bus calls in order, "add room" / "remove room"
	addGate  *gate
	remGate  *gate
	latGate  *gate

	// roomLatest has Latest give the room's newest seq in Redis's log
	// rather than the counter, which rooms written one after another share.
	roomLatest bool
	// History reads (Range, Pending, Floors, Newest) take readDelay each;
	// reads counts those running, mostReads the most at once, afterPage is
	// called once a Redis read brought messages (a page, when Redis keeps
	// them all).
	readDelay        time.Duration
	reads, mostReads atomic.Int64
	afterPage        func()
}

// reading counts a history read until the function it returns is called.
func (w *world) reading() func() {
	n := w.reads.Add(1)
	for {
		most := w.mostReads.Load()
		if n <= most || w.mostReads.CompareAndSwap(most, n) {
			break
		}
	}
	time.Sleep(w.readDelay)
	return func() { w.reads.Add(-1) }
}

func newWorld(t *testing.T, opts Options) *world {
	w := &world{keep: 1000, epoch: "e1", log: map[string][]protocol.Delivery{}, stored: map[string]map[int64]protocol.Message{},
		backlog: map[string]map[int64]protocol.Message{}, floors: map[string][]int64{},
		set: map[string]bool{}, live: map[string]bool{}}
	if opts.RetryMin == 0 {
		opts.RetryMin, opts.RetryMax = time.Millisecond, 2*time.Millisecond
	}
	if opts.LossGrace == 0 {
		opts.LossGrace = time.Millisecond
	}
	w.h = New(w, w, archive{w}, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	return w
}

func (w *world) Add(ctx context.Context, rooms ...string) error {
	w.mu.Lock()
	g := w.addGate
	w.mu.Unlock()
	g.pass("add")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rooms {
		w.adds = append(w.adds, "add "+r)
		w.set[r] = true // go-redis keeps the channel even when the call fails
	}
	if err := w.check("add"); err != nil {
		return err
	}
	for _, r := range rooms {
		w.live[r] = true
		go w.h.Subscribed(r)
	}
	return nil
}

func (w *world) Remove(ctx context.Context, rooms ...string) error {
	w.mu.Lock()
	g := w.remGate
	w.mu.Unlock()
	g.pass("remove")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rooms {
		w.adds = append(w.adds, "remove "+r)
		delete(w.set, r)
		delete(w.live, r)
	}
	return w.check("remove")
}

// reconnect is a pub/sub reconnect: go-redis resubscribes its set.
func (w *world) reconnect() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.live = map[string]bool{}
	for r := range w.set {
		w.live[r] = true
		go w.h.Subscribed(r)
	}
}

func (w *world) Latest(ctx context.Context, room string) (protocol.Position, error) {
	w.mu.Lock()
	g := w.latGate
	w.mu.Unlock()
	g.pass("latest " + room)
	if err := w.check("latest"); err != nil {
		return protocol.Position{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if l := w.log[room]; w.roomLatest && len(l) > 0 {
		return protocol.Position{Seq: l[len(l)-1].Seq, Epoch: w.epoch}, nil
	}
	return protocol.Position{Seq: w.seq, Epoch: w.epoch}, nil
}

func (w *world) Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Delivery, error) {
	defer w.reading()()
	if err := w.check("redis"); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []protocol.Delivery
	for _, d := range w.log[room] {
		if d.Seq > after && d.Seq <= upto && len(out) < limit {
			out = append(out, d)
		}
	}
	if len(out) > 0 && w.afterPage != nil {
		w.afterPage()
	}
	return out, nil
}

func (w *world) Pending(ctx context.Context, room string, after, upto int64) ([]protocol.Delivery, error) {
	defer w.reading()()
	if err := w.check("backlog"); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []protocol.Delivery
	for s := after + 1; s <= upto; s++ {
		if m, ok := w.backlog[room][s]; ok {
			out = append(out, protocol.Delivery{Room: room, Seq: s, Frame: m.Frame()})
		}
	}
	return out, nil
}

// archive is the Postgres side of world.
type archive struct{ *world }

func (a archive) Floors(ctx context.Context, room string, from, to int64) ([]int64, time.Duration, error) {
	defer a.reading()()
	if err := a.check("postgres"); err != nil {
		return nil, 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int64
	for _, f := range a.floors[room] {
		if f >= from && f <= to {
			out = append(out, f)
		}
	}
	return out, time.Since(a.floorsAt), nil
}

func (a archive) Newest(ctx context.Context, room string, after, upto, n int64) (oldest, count int64, err error) {
	defer a.reading()()
	if err := a.check("postgres"); err != nil {
		return 0, 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := upto; s > after && count < n; s-- {
		if _, ok := a.stored[room][s]; ok {
			oldest, count = s, count+1
		}
	}
	return oldest, count, nil
}

func (a archive) Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Message, error) {
	defer a.reading()()
	if err := a.check("postgres"); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []protocol.Message
	for s := after + 1; s <= upto && len(out) < limit; s++ {
		if m, ok := a.stored[room][s]; ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// write accepts n messages into Redis's log (trimmed to keep) and Postgres
// without publishing them: what a member that is away misses.
func (w *world) write(room string, n int) []*protocol.Delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*protocol.Delivery
	for range n {
		w.seq++
		m := protocol.Message{Room: room, Seq: w.seq, User: "u", Text: fmt.Sprint("m", w.seq), TS: time.Unix(0, 0)}
		d := protocol.Delivery{Room: room, Seq: w.seq, Frame: m.Frame()}
		w.log[room] = append(w.log[room], d)
		if len(w.log[room]) > w.keep {
			w.log[room] = w.log[room][1:]
		}
		if w.stored[room] == nil {
			w.stored[room] = map[int64]protocol.Message{}
		}
		w.stored[room][w.seq] = m
		out = append(out, &d)
	}
	return out
}

// publish writes n messages and has pub/sub bring them, if subscribed.
func (w *world) publish(room string, n int) {
	for _, d := range w.write(room, n) {
		w.mu.Lock()
		live := w.live[room]
		w.mu.Unlock()
		if live {
			w.h.Dispatch(d)
		}
	}
}

// unstore deletes from..to from Postgres (and from Redis's log).
func (w *world) unstore(room string, from, to int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := from; s <= to; s++ {
		delete(w.stored[room], s)
	}
	kept := w.log[room][:0]
	for _, d := range w.log[room] {
		if d.Seq < from || d.Seq > to {
			kept = append(kept, d)
		}
	}
	w.log[room] = kept
}

// hold takes from..to out of both stores, as a persist writer holds what it
// read from a Redis that lost it since; release stores them after all.
func (w *world) hold(room string, from, to int64) (release func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	held := map[int64]protocol.Message{}
	for s := from; s <= to; s++ {
		held[s] = w.stored[room][s]
		delete(w.stored[room], s)
	}
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for s, m := range held {
			w.stored[room][s] = m
		}
	}
}

// reseed is Redis losing the room: its log is gone, and the counter starts
// again above skip with a new epoch, from a floor Postgres records.
func (w *world) reseed(room string, skip int64, epoch string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log[room] = nil
	w.seq += skip
	w.epoch = epoch
	w.floors[room] = append(w.floors[room], w.seq)
	w.floorsAt = time.Now()
}

// queue moves from..to out of Postgres into the persist backlog: accepted,
// not stored yet (they stay in Redis's log unless it dropped them).
func (w *world) queue(room string, from, to int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.backlog[room] == nil {
		w.backlog[room] = map[int64]protocol.Message{}
	}
	for s := from; s <= to; s++ {
		if m, ok := w.stored[room][s]; ok {
			w.backlog[room][s] = m
			delete(w.stored[room], s)
		}
	}
}

func (w *world) subscribed(room string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set[room] && w.live[room]
}

// member records what reaches it; its writer can be held to play a slow
// client.
type member struct {
	mu     sync.Mutex
	frames []*protocol.Delivery
	pages  []int // messages in each catch-up page pushed (gaps not counted)
	queued int   // catch-up frames the writer has not taken
	// pagesQueued counts the catch-up pages the writer has not taken,
	// mostQueued the most at once; onTake is told how many it takes.
	pagesQueued, mostQueued int
	onTake                  func(pages int)
	held                    bool // the writer takes nothing while held
	taken                   chan struct{}
	closed                  int // close code, 0 while open
	changed                 chan struct{}
	waiting                 chan error // Drained blocked (nil), or returned its error after blocking
}

func newMember() *member {
	return &member{changed: make(chan struct{}, 1), waiting: make(chan error, 100)}
}

func (m *member) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *member) Deliver(d *protocol.Delivery) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed != 0 {
		return false
	}
	m.frames = append(m.frames, d)
	m.notify()
	return true
}

func (m *member) Catchup(ds []*protocol.Delivery) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed != 0 {
		return false
	}
	m.frames = append(m.frames, ds...)
	n := 0
	for _, d := range ds {
		if d.IsMessage() {
			n++
		}
	}
	m.pages = append(m.pages, n)
	if m.held {
		m.queued += len(ds)
		m.pagesQueued++
		m.mostQueued = max(m.mostQueued, m.pagesQueued)
	}
	m.notify()
	return true
}

func (m *member) Drained(ctx context.Context) error {
	m.mu.Lock()
	if m.queued == 0 {
		m.mu.Unlock()
		return nil
	}
	if m.taken == nil {
		m.taken = make(chan struct{})
	}
	taken := m.taken
	m.mu.Unlock()
	m.waiting <- nil
	select {
	case <-taken:
		return nil
	case <-ctx.Done():
		m.waiting <- ctx.Err()
		return ctx.Err()
	}
}

func (m *member) Close(code int, _ string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = code
	if m.taken != nil {
		close(m.taken)
		m.taken = nil
	}
	m.notify()
}

// hold stops the member's writer; take lets it take what is queued once,
// release for good.
func (m *member) hold() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held = true
}

func (m *member) take() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.onTake != nil && m.pagesQueued > 0 {
		m.onTake(m.pagesQueued)
	}
	m.queued, m.pagesQueued = 0, 0
	if m.taken != nil {
		close(m.taken)
		m.taken = nil
	}
}

func (m *member) release() {
	m.mu.Lock()
	m.held = false
	m.mu.Unlock()
	m.take()
}

func (m *member) pushed() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.pages...)
}

// item is one frame as the client sees it.
type item struct {
	op    string // joined, message, gap
	seq   int64  // joined's or message's seq; a gap's to
	from  int64  // a gap's from
	epoch string // joined's
}

func (it item) String() string {
	switch it.op {
	case "gap":
		return fmt.Sprintf("gap %d-%d", it.from, it.seq)
	case "joined":
		return fmt.Sprintf("joined %d %s", it.seq, it.epoch)
	}
	return fmt.Sprint(it.seq)
}

func (m *member) items(t *testing.T) []item {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]item, 0, len(m.frames))
	for _, d := range m.frames {
		var f protocol.ServerFrame
		if err := json.Unmarshal(d.Frame, &f); err != nil {
			t.Fatalf("frame %s: %v", d.Frame, err)
		}
		switch {
		case f.Op == protocol.OpJoined:
			out = append(out, item{op: "joined", seq: f.Seq, epoch: f.Epoch})
		case f.Op == protocol.OpMessage:
			out = append(out, item{op: "message", seq: f.Seq})
		case f.Op == protocol.OpError && f.Code == protocol.CodeHistoryGap:
			if d.From != f.From || d.Seq != f.To {
				t.Fatalf("gap delivery %d-%d carries frame %s", d.From, d.Seq, d.Frame)
			}
			out = append(out, item{op: "gap", seq: f.To, from: f.From})
		default:
			t.Fatalf("unexpected frame %s", d.Frame)
		}
	}
	return out
}

// last is the newest seq the member has been handed, a gap's end included.
func (m *member) last(t *testing.T) int64 {
	its := m.items(t)
	for i := len(its) - 1; i >= 0; i-- {
		if its[i].op != "joined" {
			return its[i].seq
		}
	}
	return 0
}

// await waits until cond holds, re-checking whenever the member gets
// something; it fails the test after 10 s.
func (m *member) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-m.changed:
		case <-deadline:
			t.Fatalf("waiting for %s: member has %v (closed %d)", what, m.items(t), m.closed)
		}
	}
}

// awaitSeq waits until the member has been handed seq.
func (m *member) awaitSeq(t *testing.T, seq int64) {
	t.Helper()
	m.await(t, fmt.Sprint("seq ", seq), func() bool { return m.last(t) >= seq })
}

// eventually retries cond every millisecond for up to 10 s: for state no
// member sees (the subscription), which has no signal of its own.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// stream checks what a member saw after its joined frame: seqs strictly
// increasing from after+1, every hole announced by a gap right where it is
// or ending at one of the skips (a reseed's floor: seqs no message had), and
// returns it as text for an exact comparison.
func stream(t *testing.T, its []item, after int64, skips ...int64) string {
	t.Helper()
	var s string
	next := after + 1
	for _, it := range its {
		if it.op == "joined" {
			continue
		}
		from := it.seq
		if it.op == "gap" {
			from = it.from
		}
		if from > next && slices.Contains(skips, from-1) {
			s += skipText(next, from-1)
			next = from
		}
		if from != next {
			t.Fatalf("stream %v: %v starts at %d, want %d (a hole or a repeat)", its, it, from, next)
		}
		next = it.seq + 1
		s += it.String() + " "
	}
	return s
}

// run renders from..to as stream does.
func run(from, to int64) string {
	var s string
	for i := from; i <= to; i++ {
		s += fmt.Sprint(i) + " "
	}
	return s
}

func gapText(from, to int64) string { return fmt.Sprintf("gap %d-%d ", from, to) }

func skipText(from, to int64) string { return fmt.Sprintf("skip %d-%d ", from, to) }
