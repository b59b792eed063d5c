package chattest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/app/store"
)

// StartPostgres starts a PostgreSQL 15 of the test's own on a free port,
// stopped when the test ends.
func StartPostgres(t testing.TB) *local.Postgres {
	t.Helper()
	return startOwn(t, 2*time.Minute, local.StartPostgres, func(pg *local.Postgres) { pg.Stop(30 * time.Second) })
}

// StartRedis starts a redis-server of the test's own on a free port, killed
// when the test ends.
func StartRedis(t testing.TB) *local.Redis {
	t.Helper()
	return startOwn(t, time.Minute, local.StartRedis, func(r *local.Redis) { r.Kill() })
}

// StartCluster starts a Redis Cluster of the test's own, three primaries
// with a replica each, stopped when the test ends.
func StartCluster(t testing.TB) *local.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := local.StartCluster(ctx, t.TempDir(), 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(10 * time.Second) })
	return c
}

// startOwn starts a process with start, within timeout, on a free port and
// in a directory of the test's own, and ends it with stop when the test ends.
func startOwn[P any](t testing.TB, timeout time.Duration, start func(ctx context.Context, dir string, port int) (P, error), stop func(P)) P {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	port, err := local.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := start(ctx, t.TempDir(), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(p) })
	return p
}

// StartStore starts a Postgres of the test's own and opens the migrated
// store with opts, closed when the test ends.
func StartStore(t testing.TB, opts ...store.Option) (*local.Postgres, *store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := StartPostgres(t)
	st, err := store.Open(ctx, pg.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return pg, st
}

// RequirePasswords switches pg from trust to SCRAM for every role but
// postgres, as RDS has it; admin is a connection as postgres.
func RequirePasswords(t testing.TB, ctx context.Context, admin *pgx.Conn, pg *local.Postgres) {
	t.Helper()
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(filepath.Join(pg.DataDir(), "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := admin.QueryRow(ctx, `SELECT pg_reload_conf()`).Scan(&ok); err != nil || !ok {
		t.Fatalf("reload pg_hba.conf: %v", err)
	}
}
