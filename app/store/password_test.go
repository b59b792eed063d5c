package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/local"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
)

// A password rotated while the store is open reaches it at its next
// connection: the old password is refused once changed, sessions opened
// with it are cut, and the same Store (no restart, no reopen) writes and
// reads again as soon as its credential source hands out the new one. This
// is how an RDS IAM token (15 minutes) or a rotated secret reaches a pod.
func TestRotatedPasswordReachesTheOpenStoreAtItsNextConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := chattest.StartPostgres(t)
	admin := connect(ctx, t, pg.URL())
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE ROLE chat_rotating LOGIN PASSWORD 'first-password'`)
	exec(`GRANT USAGE, CREATE ON SCHEMA public TO chat_rotating`)
	chattest.RequirePasswords(t, ctx, admin, pg)

	var current atomic.Value
	current.Store("first-password")
	var asked atomic.Int64
	st, err := store.Open(ctx, fmt.Sprintf("postgres://chat_rotating@%s/%s?sslmode=disable", pg.Addr(), local.Database),
		store.WithPassword(func(context.Context) (string, error) {
			asked.Add(1)
			return current.Load().(string), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate with the first password: %v", err)
	}
	insert := func(seq int64) error {
		_, err := st.Insert(ctx, []protocol.Message{{Room: "lobby", Seq: seq, User: "alice", Text: "hi", ID: fmt.Sprint(seq), TS: time.Now()}})
		return err
	}
	if err := insert(1); err != nil {
		t.Fatalf("insert with the first password: %v", err)
	}

	// The rotation: the old password stops working and its sessions end.
	exec(`ALTER ROLE chat_rotating PASSWORD 'second-password'`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'chat_rotating'`)
	before := asked.Load()
	if err := untilErr(func() error { return insert(2) }, func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == "28P01" // invalid_password
	}); err != nil {
		t.Fatalf("with the old password still handed out: %v; want a refused login, proving each connection is authenticated anew", err)
	}

	current.Store("second-password")
	if err := untilErr(func() error { return insert(2) }, func(err error) bool { return err == nil }); err != nil {
		t.Fatalf("with the new password: %v", err)
	}
	msgs, err := st.Range(ctx, "lobby", 0, 10, 10)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("history after the rotation: %d messages (%v), want both", len(msgs), err)
	}
	if asked.Load() <= before {
		t.Error("the credential source was not asked again after the rotation")
	}
}

// untilErr calls op until done accepts its error (a broken pooled
// connection may take a call or two to be discarded), at most 20 times, and
// returns the last error if done never accepted one.
func untilErr(op func() error, done func(error) bool) error {
	var err error
	for range 20 {
		if err = op(); done(err) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err == nil {
		return errors.New("no error")
	}
	return err
}
