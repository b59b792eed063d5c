package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxReserveBatch bounds the rooms one reservation statement carries.
const maxReserveBatch = 512

// reserveTimeout bounds one reservation statement: it serves many senders,
// none of whose contexts may cut it short for the others.
const reserveTimeout = 10 * time.Second

// A reservation is one ReserveSeqs call waiting for its statement.
type reservation struct {
	room       string
	atLeast, n int64
	restart    bool
	hi         int64
	reused     bool
	err        error
	done       chan struct{}
}

// reserver gathers concurrent reservations into one statement: when many
// rooms reserve at once (a burst of new rooms, or every active room after
// a Redis loss), each pays a share of one round trip and commit instead of
// queueing for the pool one statement each. One statement runs at a time;
// the calls that arrive meanwhile go together in the next.
type reserver struct {
	mu         sync.Mutex
	queue      []*reservation
	running    bool
	statements int64 // run so far, for tests
}

// ReserveSeqs reserves the next n seqs of room above atLeast and returns the
// top of the block: hi = max(every earlier reservation, atLeast) + n. The
// broker hands out seqs only below a reserved top, so hi-n bounds every seq
// the room ever had. reused is true when the room had seqs before (a
// reservation, or messages stored before reservations existed): sends of
// it may be retried whose dedupe keys Redis lost. restart records hi-n in
// room_floors, in the same statement: the counter restarts there.
func (s *Store) ReserveSeqs(ctx context.Context, room string, atLeast, n int64, restart bool) (hi int64, reused bool, err error) {
	r := &reservation{room: room, atLeast: atLeast, n: n, restart: restart, done: make(chan struct{})}
	s.res.mu.Lock()
	s.res.queue = append(s.res.queue, r)
	if !s.res.running {
		s.res.running = true
		go s.reserveQueued()
	}
	s.res.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		// The statement may still commit: a reservation nobody uses only
		// skips seqs, as one whose answer was lost would.
		return 0, false, fmt.Errorf("reserve seqs of %s: %w", room, ctx.Err())
	}
	if r.err != nil {
		return 0, false, fmt.Errorf("reserve seqs of %s: %w", room, r.err)
	}
	return r.hi, r.reused, nil
}

// reserveQueued runs statements until the queue is empty. A batch holds a
// room once: the statement's upsert may touch a row only once, and the
// second reservation of a room must see the first's top.
func (s *Store) reserveQueued() {
	for {
		s.res.mu.Lock()
		var batch, later []*reservation
		in := map[string]bool{}
		for _, r := range s.res.queue {
			if in[r.room] || len(batch) == maxReserveBatch {
				later = append(later, r)
				continue
			}
			in[r.room] = true
			batch = append(batch, r)
		}
		s.res.queue = later
		if len(batch) == 0 {
			s.res.running = false
			s.res.mu.Unlock()
			return
		}
		s.res.mu.Unlock()
		s.reserveBatch(batch)
	}
}

// reserveBatch runs one statement for batch; if Postgres refuses it with
// more than one room, each room is tried alone, so that one room's fault (a
// top out of range) refuses that room only. Postgres down fails them all.
func (s *Store) reserveBatch(batch []*reservation) {
	ctx, cancel := context.WithTimeout(context.Background(), reserveTimeout)
	defer cancel()
	err := s.reserve(ctx, batch)
	var refused *pgconn.PgError
	if errors.As(err, &refused) && len(batch) > 1 {
		for _, r := range batch {
			s.reserveBatch([]*reservation{r})
		}
		return
	}
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

// reserve is one statement for every room of batch. Rows are locked in
// room order, so that two instances' statements over the same rooms queue
// rather than deadlock.
func (s *Store) reserve(ctx context.Context, batch []*reservation) error {
	const reserve = `
		WITH req AS (
			SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bool[]) AS q(room, at_least, n, restart)),
		block AS (
			INSERT INTO room_seqs AS r (room, hi)
			SELECT q.room, greatest(q.at_least, coalesce((SELECT max(seq) FROM messages m WHERE m.room = q.room), 0)) + q.n
			FROM req q ORDER BY q.room
			ON CONFLICT (room) DO UPDATE SET hi = greatest(r.hi, (SELECT q.at_least FROM req q WHERE q.room = r.room))
				+ (SELECT q.n FROM req q WHERE q.room = r.room)
			RETURNING r.room, r.hi, xmax <> 0 AS updated),
		floor AS (
			INSERT INTO room_floors (room, floor)
			SELECT b.room, b.hi - q.n FROM block b JOIN req q USING (room) WHERE q.restart
			ON CONFLICT DO NOTHING)
		SELECT b.room, b.hi, b.updated OR b.hi - q.n > 0 FROM block b JOIN req q USING (room)`
	rooms := make([]string, len(batch))
	atLeast, n := make([]int64, len(batch)), make([]int64, len(batch))
	restart := make([]bool, len(batch))
	byRoom := make(map[string]*reservation, len(batch))
	for i, r := range batch {
		rooms[i], atLeast[i], n[i], restart[i] = r.room, r.atLeast, r.n, r.restart
		byRoom[r.room] = r
	}
	s.res.mu.Lock()
	s.res.statements++
	s.res.mu.Unlock()
	return s.migrated(ctx, func() error {
		rows, err := s.pool.Query(ctx, reserve, rooms, atLeast, n, restart)
		if err != nil {
			return err
		}
		defer rows.Close()
		got := 0
		for rows.Next() {
			var room string
			var hi int64
			var reused bool
			if err := rows.Scan(&room, &hi, &reused); err != nil {
				return err
			}
			if r := byRoom[room]; r != nil {
				r.hi, r.reused = hi, reused
				got++
			}
		}
		if err := rows.Err(); err != nil || got == len(batch) {
			return err
		}
		return fmt.Errorf("the statement answered for %d of %d rooms", got, len(batch))
	})
}
