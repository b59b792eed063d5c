package store_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gruntwork-io/terratest/modules/retry"
	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/app/store"
)

// A reservation call and what it got.
type reserveCall struct {
	room       string
	atLeast, n int64
	restart    bool
	hi         int64
	reused     bool
	err        error
}

// reserveHeld runs calls concurrently while a transaction holds room_seqs
// locked against the reservations' inserts: a first reservation waits on the
// lock, every call queues behind it, and they all go once it is released.
func reserveHeld(ctx context.Context, t *testing.T, st *store.Store, conn *pgx.Conn, calls []*reserveCall) {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE room_seqs IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	first := &reserveCall{room: "held", n: 1}
	for _, c := range append([]*reserveCall{first}, calls...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.hi, c.reused, c.err = st.ReserveSeqs(ctx, c.room, c.atLeast, c.n, c.restart)
		}()
		if c == first {
			waitFor(t, "the first reservation's statement", func() bool { return st.ReserveStatements() == 1 })
		}
	}
	waitFor(t, "every call queued", func() bool { return st.ReserveQueued() == len(calls) })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if first.err != nil {
		t.Fatal(first.err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	retry.DoWithRetry(t, what, 500, 10*time.Millisecond, func() (string, error) {
		if !ok() {
			return "", fmt.Errorf("not yet: %s", what)
		}
		return "", nil
	})
}

// Reservations that arrive while one is under way go together in the next
// statement, each room with what a statement of its own would have given,
// and a room asked for twice waits for a statement after its first.
func TestReservationsThatArriveTogetherShareAStatement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, conn := openStore(ctx, t)
	const rooms, block = 200, 100
	var calls []*reserveCall
	for i := range rooms {
		calls = append(calls, &reserveCall{room: fmt.Sprintf("r%03d", i), n: block, restart: true})
	}
	for range 3 {
		calls = append(calls, &reserveCall{room: "twice", n: block})
	}
	reserveHeld(ctx, t, st, conn, calls)

	for _, c := range calls[:rooms] {
		if c.err != nil || c.hi != block || c.reused {
			t.Fatalf("%s: hi %d reused %v err %v; want a fresh room's first block, hi %d", c.room, c.hi, c.reused, c.err, block)
		}
	}
	// The room's three blocks follow one another, whichever went first.
	tops := map[int64]bool{}
	for _, c := range calls[rooms:] {
		if c.err != nil || c.reused != (c.hi > block) {
			t.Fatalf("twice: hi %d reused %v err %v", c.hi, c.reused, c.err)
		}
		tops[c.hi] = true
	}
	if !tops[block] || !tops[2*block] || !tops[3*block] {
		t.Fatalf("twice got tops %v; want 100, 200 and 300", tops)
	}
	if n := countRows(ctx, t, conn, "room_floors"); n != rooms {
		t.Fatalf("%d restart floors; want one for each of the %d restarting rooms", n, rooms)
	}
	// The held one, the 200 rooms with twice's first, then twice's others.
	if got := st.ReserveStatements(); got != 4 {
		t.Fatalf("%d statements for %d reservations; want 4", got, len(calls)+1)
	}
}

// One room's fault refuses that room's reservation only: its batch is
// tried again one room at a time.
func TestAReservationPostgresRefusesFailsItsRoomOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, conn := openStore(ctx, t)
	calls := []*reserveCall{{room: "past-bigint", atLeast: math.MaxInt64 - 5, n: 100}}
	for i := range 10 {
		calls = append(calls, &reserveCall{room: fmt.Sprintf("fine%d", i), n: 100})
	}
	reserveHeld(ctx, t, st, conn, calls)
	if err := calls[0].err; err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("past-bigint: hi %d err %v; want bigint out of range", calls[0].hi, err)
	}
	for _, c := range calls[1:] {
		if c.err != nil || c.hi != 100 {
			t.Fatalf("%s: hi %d err %v; want its block beside the refused room", c.room, c.hi, c.err)
		}
	}
}
