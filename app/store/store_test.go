package store_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
)

// A (room, seq) and a sender's id each name one stored message. Insert
// leaves a replay of a stored message alone and refuses a different one
// over it, returning it with the reason and keeping it in rejected_messages.
func TestInsertRefusesASecondMessageUnderAStoredSeqOrID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, conn := openStore(ctx, t)
	ts := time.Date(2026, 12, 6, 10, 0, 0, 123e6, time.UTC)
	original := protocol.Message{Room: "r", Seq: 1, User: "alice", Text: "hi", ID: "c-1", TS: ts}
	if rej, err := st.Insert(ctx, []protocol.Message{original}); err != nil || len(rej) != 0 {
		t.Fatalf("first insert: %v, %v", rej, err)
	}
	cases := []struct {
		name   string
		msg    protocol.Message
		reason string // "" for none
	}{
		{"the same message again (a replay)", original, ""},
		{"another message under the stored seq", protocol.Message{Room: "r", Seq: 1, User: "bob", Text: "other", ID: "b-1", TS: ts}, store.RejectSeqTaken},
		{"the same sender id under another seq", protocol.Message{Room: "r", Seq: 2, User: "alice", Text: "hi", ID: "c-1", TS: ts}, store.RejectDuplicateID},
		{"the same id from another sender", protocol.Message{Room: "r", Seq: 3, User: "bob", Text: "hi", ID: "c-1", TS: ts}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rej, err := st.Insert(ctx, []protocol.Message{c.msg})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case c.reason == "" && len(rej) != 0:
				t.Fatalf("refused %+v", rej)
			case c.reason != "" && (len(rej) != 1 || rej[0].Reason != c.reason || rej[0].Seq != c.msg.Seq):
				t.Fatalf("rejections %+v, want seq %d refused for %s", rej, c.msg.Seq, c.reason)
			case c.reason != "":
				var reason string
				err := conn.QueryRow(ctx, `SELECT reason FROM rejected_messages WHERE room = 'r' AND seq = $1 AND user_id = $2`, c.msg.Seq, c.msg.User).Scan(&reason)
				if err != nil || reason != c.reason {
					t.Fatalf("rejected_messages: %q, %v; want %q", reason, err, c.reason)
				}
			}
		})
	}
	rows, err := st.Range(ctx, "r", 0, 10, 10)
	if err != nil || len(rows) != 2 || rows[0].User != "alice" || !rows[0].TS.Equal(ts) || rows[1].Seq != 3 {
		t.Fatalf("stored %+v, %v: want the original at 1 and bob's at 3", rows, err)
	}
}

// A database that already holds a sender's message twice (stored before the
// id index existed) migrates: the lowest seq stays, the copies move to
// rejected_messages.
func TestTheIDIndexMigrationSetsAsideCopiesStoredBefore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := chattest.StartPostgres(t)
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	for _, name := range []string{"001_messages.sql", "002_room_seqs.sql"} {
		sql, err := os.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		exec(string(sql))
		exec(`INSERT INTO schema_migrations (name) VALUES ($1)`, "migrations/"+name)
	}
	for _, seq := range []int{5, 10007, 20011} {
		exec(`INSERT INTO messages (room, seq, user_id, body, client_id, ts) VALUES ('r', $1, 'alice', 'hi', 'c-1', now())`, seq)
	}
	st, err := store.Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var kept, moved int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM messages WHERE seq = 5), (SELECT count(*) FROM rejected_messages WHERE reason = 'duplicate_id')`).Scan(&kept, &moved); err != nil {
		t.Fatal(err)
	}
	if total := countRows(ctx, t, conn, "messages"); kept != 1 || total != 1 || moved != 2 {
		t.Fatalf("messages %d (seq 5: %d), rejected %d; want seq 5 alone and 2 copies set aside", total, kept, moved)
	}
}

// openStore opens the migrated store on a Postgres of the test's own, and
// a connection to it as postgres; both close when the test ends.
func openStore(ctx context.Context, t *testing.T) (*store.Store, *pgx.Conn) {
	t.Helper()
	pg, st := chattest.StartStore(t)
	return st, connect(ctx, t, pg.URL())
}

// connect is a connection to url, closed when the test ends.
func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func countRows(ctx context.Context, t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
