package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ReserveSeqs reserves the next n seqs of room above atLeast and returns the
// top of the block: hi = max(every earlier reservation, atLeast) + n. The
// broker hands out seqs only below a reserved top, so hi-n bounds every seq
// the room ever had. reused is true when the room had seqs before (a
// reservation, or messages stored before reservations existed): sends of
// it may be retried whose dedupe keys Redis lost.
func (s *Store) ReserveSeqs(ctx context.Context, room string, atLeast, n int64) (hi int64, reused bool, err error) {
	const reserve = `
		INSERT INTO room_seqs AS r (room, hi)
		SELECT $1, greatest($2, coalesce(max(seq), 0)) + $3 FROM messages WHERE room = $1
		ON CONFLICT (room) DO UPDATE SET hi = greatest(r.hi, $2) + $3
		RETURNING hi, xmax <> 0 OR hi - $3 > 0`
	for migrated := false; ; migrated = true {
		err = s.pool.QueryRow(ctx, reserve, room, atLeast, n).Scan(&hi, &reused)
		if !migrated && undefinedTable(err) {
			// Sends may come before the persist writer migrated a new database.
			if err := s.Migrate(ctx); err != nil {
				return 0, false, fmt.Errorf("reserve seqs of %s: %w", room, err)
			}
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("reserve seqs of %s: %w", room, err)
		}
		return hi, reused, nil
	}
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
