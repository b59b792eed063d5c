package main

import (
	"context"

	"github.com/switchboard-dev/switchboard/app/config"
	"github.com/switchboard-dev/switchboard/app/rdsiam"
	"github.com/switchboard-dev/switchboard/app/store"
)

// openStore opens the history database with DATABASE_AUTH's credential:
// the URL's password, or an RDS IAM token signed for each new connection.
// History reads get a pool of their own, CATCHUP_CONCURRENCY connections.
func openStore(ctx context.Context, cfg config.Config) (*store.Store, error) {
	reads := store.WithReadConns(cfg.CatchupConcurrency)
	if cfg.DatabaseAuth != config.AuthRDSIAM {
		return store.Open(ctx, cfg.DatabaseURL, reads)
	}
	password, err := rdsiam.FromEnvironment(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, cfg.DatabaseURL, store.WithPassword(password), reads)
}
