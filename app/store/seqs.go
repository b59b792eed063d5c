package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Fence returns the next Redis fence, above every one before.
func (s *Store) Fence(ctx context.Context) (fence int64, err error) {
	err = s.migrated(ctx, func() error { return s.pool.QueryRow(ctx, `SELECT nextval('redis_fences')`).Scan(&fence) })
	if err != nil {
		return 0, fmt.Errorf("next redis fence: %w", err)
	}
	return fence, nil
}

// migrated runs query, and once more after migrating if a table it needs
// is missing: sends may come before the persist writer migrated a new
// database.
func (s *Store) migrated(ctx context.Context, query func() error) error {
	err := query()
	if !undefinedTable(err) {
		return err
	}
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	return query()
}

// Floors returns the room's restart floors f with from <= f <= to, ascending,
// and how long ago the newest of them was recorded.
func (s *Store) Floors(ctx context.Context, room string, from, to int64) (floors []int64, age time.Duration, err error) {
	var secs float64
	err = s.reads.QueryRow(ctx, `
		SELECT coalesce(array_agg(floor ORDER BY floor), '{}'), coalesce(extract(epoch FROM now() - max(at)), 0)::float8
		FROM room_floors WHERE room = $1 AND floor >= $2 AND floor <= $3`, room, from, to).Scan(&floors, &secs)
	if err != nil {
		return nil, 0, fmt.Errorf("restart floors of %s: %w", room, err)
	}
	return floors, time.Duration(secs * float64(time.Second)), nil
}

// Newest counts the room's stored messages with after < seq <= upto, at
// most n, and returns the oldest seq among the newest n of them: a catch-up
// that may deliver n messages starts there.
func (s *Store) Newest(ctx context.Context, room string, after, upto, n int64) (oldest, count int64, err error) {
	err = s.reads.QueryRow(ctx, `
		SELECT coalesce(min(seq), 0), count(*) FROM (
			SELECT seq FROM messages WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4
		) newest`, room, after, upto, n).Scan(&oldest, &count)
	if err != nil {
		return 0, 0, fmt.Errorf("count the messages of %s after %d: %w", room, after, err)
	}
	return oldest, count, nil
}

// SentSeq finds the seq a sender's message id was stored under.
func (s *Store) SentSeq(ctx context.Context, room, user, id string) (seq int64, found bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT seq FROM messages WHERE room = $1 AND user_id = $2 AND client_id = $3 ORDER BY seq LIMIT 1`,
		room, user, id).Scan(&seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || undefinedTable(err):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("find %s's message %q in %s: %w", user, id, room, err)
	}
	return seq, true, nil
}

func undefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
