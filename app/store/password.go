package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Option configures Open.
type Option func(*pgxpool.Config)

// WithPassword has every new connection ask password for its password
// instead of using the one in DATABASE_URL. A short-lived credential (an RDS
// IAM token) or a rotated password thus reaches a running process at its next
// connection, with no restart; connections already open are unaffected.
func WithPassword(password func(context.Context) (string, error)) Option {
	return func(cfg *pgxpool.Config) {
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			p, err := password(ctx)
			if err != nil {
				return fmt.Errorf("database credential: %w", err)
			}
			cc.Password = p
			return nil
		}
	}
}
