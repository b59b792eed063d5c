package store

import (
	"context"
	"fmt"
)

// MaxSeq is the highest seq stored for room, 0 when it has none: the floor
// above which the broker reseeds a room whose Redis state was lost.
func (s *Store) MaxSeq(ctx context.Context, room string) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM messages WHERE room = $1`, room).Scan(&n); err != nil {
		return 0, fmt.Errorf("highest stored seq of %s: %w", room, err)
	}
	return n, nil
}
