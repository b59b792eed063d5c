package dbaccess

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchboard-dev/switchboard/app/chattest"
	"github.com/switchboard-dev/switchboard/app/protocol"
	"github.com/switchboard-dev/switchboard/app/store"
	"github.com/switchboard-dev/switchboard/infra/managed"
)

// The master password as RDS could generate it: printable ASCII without
// / " @ (the RDS MasterUserPassword constraint), here with a backslash,
// which the secret's JSON escapes.
const masterPassword = `m4ster\pa$$'word!`

// The bootstrap Job's script, on a real PostgreSQL 15 standing in for RDS:
// a non-superuser master with CREATEROLE that owns the database, a stand-in
// for RDS's rds_iam role, and a stack from before the role, whose tables
// the master user migrated into public. The script runs twice (every
// `pulumi up` may run it); the chat role then migrates, reads the old rows
// and writes, and is refused everything else.
func TestBootstrapGivesTheChatRoleItsSchemaAndNothingElse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := chattest.StartPostgres(t)
	admin := connect(t, ctx, pg.URL())
	for _, sql := range []string{
		`CREATE ROLE rds_iam NOLOGIN`,
		fmt.Sprintf(`CREATE ROLE switchboard LOGIN CREATEROLE CREATEDB PASSWORD '%s'`, `m4ster\pa$$''word!`),
		`GRANT rds_iam TO switchboard WITH ADMIN OPTION`,
		`ALTER DATABASE switchboard OWNER TO switchboard`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	chattest.RequirePasswords(t, ctx, admin, pg)
	masterURL := (&url.URL{Scheme: "postgres", User: url.UserPassword("switchboard", masterPassword), Host: pg.Addr(), Path: "/switchboard", RawQuery: "sslmode=disable"}).String()

	// The stack before this role: the server ran as the master user.
	old := open(t, ctx, masterURL)
	if err := old.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Insert(ctx, []protocol.Message{{Room: "lobby", Seq: 1, User: "alice", Text: "before", ID: "a", TS: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	master := connect(t, ctx, masterURL)
	if _, err := master.Exec(ctx, `CREATE SCHEMA private; CREATE TABLE private.keys (k text); INSERT INTO private.keys VALUES ('x')`); err != nil {
		t.Fatal(err)
	}

	credentials := filepath.Join(t.TempDir(), "secret.json")
	secret := fmt.Sprintf(`{"username":"switchboard","password":%q}`, masterPassword)
	if err := os.WriteFile(credentials, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		cmd := exec.CommandContext(ctx, "/bin/sh", "bootstrap.sh")
		cmd.Env = append(os.Environ(),
			"PATH=/usr/lib/postgresql/15/bin:"+os.Getenv("PATH"),
			"CREDENTIALS="+credentials, "SQL=bootstrap.sql", "APP_ROLE="+Role, "APP_SCHEMA="+Schema,
			"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", pg.Port), "PGDATABASE=switchboard", "PGSSLMODE=disable",
		)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bootstrap run %d: %v\n%s", run, err, out)
		}
	}

	// RDS admits the role by IAM token; here a password stands in for it.
	if _, err := admin.Exec(ctx, fmt.Sprintf(`ALTER ROLE %s PASSWORD 'token-stand-in'`, Role)); err != nil {
		t.Fatal(err)
	}
	appURL := fmt.Sprintf("postgres://%s:token-stand-in@%s/switchboard?sslmode=disable", Role, pg.Addr())
	st := open(t, ctx, appURL)
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("the chat role migrates: %v", err)
	}
	if _, err := st.Insert(ctx, []protocol.Message{{Room: "lobby", Seq: 2, User: "bob", Text: "after", ID: "b", TS: time.Now()}}); err != nil {
		t.Fatalf("the chat role writes: %v", err)
	}
	if msgs, err := st.Range(ctx, "lobby", 0, 10, 10); err != nil || len(msgs) != 2 || msgs[0].Text != "before" {
		t.Fatalf("history %v (%v): want the old row kept and the new one", msgs, err)
	}

	app := connect(t, ctx, appURL)
	var where, owner string
	if err := app.QueryRow(ctx, `SELECT schemaname, tableowner FROM pg_tables WHERE tablename = 'messages'`).Scan(&where, &owner); err != nil || where != Schema || owner != Role {
		t.Errorf("messages in %q owned by %q (%v): want schema %s owned by %s", where, owner, err, Schema, Role)
	}
	var super, createRole, createDB, iam bool
	if err := app.QueryRow(ctx, `SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role(rolname, 'rds_iam', 'MEMBER') FROM pg_roles WHERE rolname = current_user`).Scan(&super, &createRole, &createDB, &iam); err != nil {
		t.Fatal(err)
	}
	if super || createRole || createDB || !iam {
		t.Errorf("superuser %v, createrole %v, createdb %v, rds_iam %v: want only rds_iam", super, createRole, createDB, iam)
	}
	for _, sql := range []string{
		`CREATE TABLE public.intruder (x int)`,
		`SELECT * FROM private.keys`,
		`CREATE ROLE intruder`,
		`CREATE DATABASE intruder`,
		`SET ROLE switchboard`,
		`ALTER ROLE ` + Role + ` CREATEROLE`,
		`GRANT switchboard TO ` + Role,
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := app.Exec(ctx, sql)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
				t.Errorf("got %v: want permission denied", err)
			}
		})
	}
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func open(t *testing.T, ctx context.Context, url string) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The bootstrap SQL is tested on the PostgreSQL major prod runs: the server
// TestBootstrapGivesTheChatRoleItsSchemaAndNothingElse starts is of RDS's
// major (infra/managed), so what passes here is what RDS runs.
func TestBootstrapIsTestedOnTheMajorRDSRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := chattest.StartPostgres(t)
	var num int
	if err := connect(t, ctx, pg.URL()).QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		t.Fatal(err)
	}
	if got := strconv.Itoa(num / 10000); got != managed.PostgresMajor {
		t.Errorf("the bootstrap is tested on PostgreSQL %s, RDS runs %s", got, managed.PostgresMajor)
	}
}
