package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// caughtUp tells whether m has been handed each room's seq in want.
func (m *member) caughtUp(want map[string]int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	got := map[string]int64{}
	for _, d := range m.frames {
		if d.IsMessage() {
			got[d.Room] = max(got[d.Room], d.Seq)
		}
	}
	for room, seq := range want {
		if got[room] < seq {
			return false
		}
	}
	return true
}

// A client that resumes 100 rooms at once holds one catch-up page at a
// time, not one per room: its recoveries take turns, and each reads its
// page only once the writer has taken the one before (issue 26, item 3).
func TestAMemberResumingManyRoomsHasOneCatchUpPageInFlight(t *testing.T) {
	w := newWorld(t, Options{PageSize: 4})
	w.roomLatest = true
	var mu sync.Mutex
	inHand, most := 0, 0 // pages read and not yet taken by the writer
	w.afterPage = func() {
		mu.Lock()
		defer mu.Unlock()
		inHand++
		most = max(most, inHand)
	}
	m := newMember()
	m.hold()
	m.onTake = func(pages int) {
		mu.Lock()
		defer mu.Unlock()
		inHand -= pages
	}
	const rooms = 100
	want := map[string]int64{}
	for i := range rooms {
		room := fmt.Sprint("room-", i)
		ds := w.write(room, 10)
		want[room] = ds[len(ds)-1].Seq
		join(t, w, m, room, since(ds[0].Seq))
	}
	// Play the writer: take the queue whenever a catch-up waits for it.
	deadline := time.After(20 * time.Second)
	for !m.caughtUp(want) {
		select {
		case <-m.waiting:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatal("the member did not catch up in every room within 20 s")
		}
		m.take()
	}
	m.release()
	mu.Lock()
	defer mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if most > 1 || m.mostQueued > 1 {
		t.Fatalf("resuming %d rooms held up to %d pages read and not taken, up to %d queued; want 1", rooms, most, m.mostQueued)
	}
	// 9 missed messages a room, in pages of 4: 3 pages each.
	if len(m.pages) != 3*rooms {
		t.Fatalf("%d pages pushed, want %d", len(m.pages), 3*rooms)
	}
}

// Catch-up reads share CATCHUP_CONCURRENCY slots per instance, with the
// history API (ReadSlot): 10 members resuming at once never have more than
// 2 reads running, and none runs while the API holds every slot.
func TestCatchUpReadsShareTheInstancesReadSlots(t *testing.T) {
	w := newWorld(t, Options{PageSize: 4, CatchupConcurrency: 2})
	w.roomLatest = true
	w.readDelay = 5 * time.Millisecond
	var held []func()
	for range 2 {
		release, err := w.h.ReadSlot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, release)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := w.h.ReadSlot(ctx); err == nil {
		t.Fatal("a third read slot with CatchupConcurrency 2")
	}
	cancel()
	type resume struct {
		m    *member
		want map[string]int64
	}
	var all []resume
	for i := range 10 {
		r := resume{m: newMember(), want: map[string]int64{}}
		for j := range 2 {
			room := fmt.Sprintf("room-%d-%d", i, j)
			ds := w.write(room, 20)
			r.want[room] = ds[len(ds)-1].Seq
			join(t, w, r.m, room, since(ds[0].Seq))
		}
		all = append(all, r)
	}
	time.Sleep(100 * time.Millisecond)
	if n := w.mostReads.Load(); n != 0 {
		t.Fatalf("%d catch-up reads ran while the history API held every read slot", n)
	}
	for _, release := range held {
		release()
	}
	for _, r := range all {
		r.m.await(t, "catching up in both rooms", func() bool { return r.m.caughtUp(r.want) })
	}
	if n := w.mostReads.Load(); n != 2 {
		t.Fatalf("up to %d history reads at once, want CatchupConcurrency = 2", n)
	}
}
