package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Option configures Open.
type Option func(*options)

// options are Open's settings: the pool's configuration, which the read
// pool copies, and the read pool's size.
type options struct {
	pool      *pgxpool.Config
	readConns int32
}

// WithReadConns sizes the pool of history reads (CATCHUP_CONCURRENCY): it
// is apart from the pool that writes, so reads that pile up never hold the
// connections the persist writer and the seq reservations need.
func WithReadConns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.readConns = int32(n)
		}
	}
}

// WithPassword has every new connection ask password for its password
// instead of using the one in DATABASE_URL. A short-lived credential (an RDS
// IAM token) or a rotated password thus reaches a running process at its next
// connection, with no restart; connections already open are unaffected.
func WithPassword(password func(context.Context) (string, error)) Option {
	return func(o *options) {
		o.pool.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			p, err := password(ctx)
			if err != nil {
				return fmt.Errorf("database credential: %w", err)
			}
			cc.Password = p
			return nil
		}
	}
}
