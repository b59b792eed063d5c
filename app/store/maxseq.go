package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// MaxSeq is the highest seq stored for room, 0 when it has none: the floor
// above which the broker reseeds a room whose Redis state was lost. Before
// the first migration (a new deployment) nothing is stored either.
func (s *Store) MaxSeq(ctx context.Context, room string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM messages WHERE room = $1`, room).Scan(&n)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("highest stored seq of %s: %w", room, err)
	}
	return n, nil
}
