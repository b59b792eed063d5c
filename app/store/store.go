// Package store is Switchboard's durable history in Postgres: embedded
// migrations, idempotent batched writes and history queries.
package store

import (
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/app/protocol"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock serialises migrations across instances starting together.
const migrationLock = 7_361_042

// Store is two pools of connections to the history database: pool for
// writes (the persist writer's inserts, seq reservations, fences, sender-id
// lookups) and migrations, reads for history reads (Range, Before, Floors,
// Newest: catch-ups and the history API). However many history reads wait,
// they wait for reads' connections, never for the writer's.
type Store struct {
	pool  *pgxpool.Pool
	reads *pgxpool.Pool
	res   reserver
}

// Open prepares the pools; it does not connect, so the server can start
// while Postgres is down (live chat does not need it). The write pool
// holds up to 8 connections, the read pool up to WithReadConns (8 by
// default): an instance opens up to their sum.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.MaxConns = 8
	o := options{pool: cfg, readConns: 8}
	for _, opt := range opts {
		opt(&o)
	}
	readCfg := cfg.Copy()
	readCfg.MaxConns = o.readConns
	readCfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	reads, err := pgxpool.NewWithConfig(ctx, readCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres read pool: %w", err)
	}
	return &Store{pool: pool, reads: reads}, nil
}

// Close releases the pools.
func (s *Store) Close() {
	s.pool.Close()
	s.reads.Close()
}

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Migrate applies every embedded migration not applied yet, in name order.
func (s *Store) Migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		for _, name := range names {
			tag, err := tx.Exec(ctx, `INSERT INTO schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING`, name)
			if err != nil {
				return fmt.Errorf("record migration %s: %w", name, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			sql, err := migrations.ReadFile(name)
			if err != nil {
				return fmt.Errorf("read migration %s: %w", name, err)
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("apply migration %s: %w", name, err)
			}
		}
		return nil
	})
}

// Rejection is a message Insert did not store, and why.
type Rejection struct {
	protocol.Message
	Reason string // RejectSeqTaken or RejectDuplicateID
}

// Why a message was not stored (rejected_messages.reason).
const (
	// Another message is stored under the room and seq: a seq was handed
	// out twice, which the broker exists to prevent.
	RejectSeqTaken = "seq_taken"
	// The sender's id is stored under another seq: a retry was accepted
	// again instead of answered with its original seq.
	RejectDuplicateID = "duplicate_id"
	// Postgres refused the message's data (SQLSTATE class 22 or 23), a value
	// the edge let through; its text fields are kept Go-quoted, so that
	// whatever made the columns refuse them fits.
	RejectRefused = "refused"
)

// RejectReasons lists every reason, for metrics.
var RejectReasons = []string{RejectSeqTaken, RejectDuplicateID, RejectRefused}

// DataError tells whether Postgres refused a statement for the data it was
// given (SQLSTATE class 22, data exception, or 23, integrity constraint
// violation): running it again would fail again.
func DataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// Refuse keeps m in rejected_messages as refused, its text fields quoted.
func (s *Store) Refuse(ctx context.Context, m protocol.Message) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO rejected_messages (room, seq, user_id, body, client_id, ts, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		strconv.Quote(m.Room), m.Seq, strconv.Quote(m.User), strconv.Quote(m.Text), strconv.Quote(m.ID), m.TS, RejectRefused)
	if err != nil {
		return fmt.Errorf("set aside %s seq %d: %w", m.Room, m.Seq, err)
	}
	return nil
}

// Insert writes messages in one transaction. A message already stored as it
// is (a replay of the persist stream after a failure, or by another
// instance) is left alone; one that conflicts with a stored row is not
// stored, but kept in rejected_messages and returned, so that it is reported
// instead of dropped.
func (s *Store) Insert(ctx context.Context, msgs []protocol.Message) (rejected []Rejection, err error) {
	n := len(msgs)
	b := insertBuffers.Get().(*insertBuffer)
	defer b.put()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		inserted, err := b.insert(ctx, tx.Conn(), msgs)
		if err != nil {
			return err
		}
		for i, m := range msgs {
			if inserted[i] || b.copyOfInserted(msgs, i) {
				continue
			}
			reason, err := conflict(ctx, tx, m)
			if err != nil {
				return err
			}
			if reason == "" {
				continue // stored already, as it is
			}
			rejected = append(rejected, Rejection{m, reason})
			if _, err := tx.Exec(ctx, `
				INSERT INTO rejected_messages (room, seq, user_id, body, client_id, ts, reason)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
				m.Room, m.Seq, m.User, m.Text, m.ID, m.TS, reason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert %d messages: %w", n, err)
	}
	return rejected, nil
}

// insertSQL stores a batch as six arrays, one a column, and names the rows
// it stored.
const insertSQL = `
	INSERT INTO messages (room, seq, user_id, body, client_id, ts)
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
	ON CONFLICT DO NOTHING
	RETURNING room, seq`

// insertStatement is insertSQL's name on each connection (pgx.Conn.Prepare
// keeps it per connection).
const insertStatement = "switchboard_insert_messages"

// insertBuffer holds what one batch insert encodes and reads back, kept for
// the next batch: pgx's query builder drops its parameter buffer once it
// grew past 256 bytes (pgx v5.9), so a batch of 500 messages, ~60 KB of
// parameters, regrew it on every insert, the persist writer's largest share
// of the bytes allocated a message (docs/log.md, 2026-12-06). A buffer is
// pooled again only after the statement's result is read, when pgconn holds
// nothing of it.
type insertBuffer struct {
	params   []byte
	values   [][]byte
	columns  [4][]string // room, user, body, client id
	seqs     []int64
	tss      []time.Time
	inserted []bool
}

var insertBuffers = sync.Pool{New: func() any { return new(insertBuffer) }}

// maxKeptParams bounds what a pooled buffer keeps between batches: a
// batch of unusually long messages leaves its buffer to the collector.
const maxKeptParams = 1 << 20

func (b *insertBuffer) put() {
	if cap(b.params) > maxKeptParams {
		return
	}
	for i := range b.columns {
		clear(b.columns[i])
	}
	clear(b.values)
	insertBuffers.Put(b)
}

var (
	insertOIDs    = []uint32{pgtype.TextArrayOID, pgtype.Int8ArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TextArrayOID, pgtype.TimestamptzArrayOID}
	insertFormats = []int16{pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode}
	// The returned room and seq, in binary: seq as 8 bytes, big-endian.
	returnedFormats = []int16{pgx.BinaryFormatCode, pgx.BinaryFormatCode}
)

// insert runs insertSQL for msgs on conn and tells which of them it stored:
// inserted[i] for msgs[i] (for the first of copies in the batch).
func (b *insertBuffer) insert(ctx context.Context, conn *pgx.Conn, msgs []protocol.Message) ([]bool, error) {
	n := len(msgs)
	rooms, users, bodies, ids := b.columns[0][:0], b.columns[1][:0], b.columns[2][:0], b.columns[3][:0]
	seqs, tss := b.seqs[:0], b.tss[:0]
	for _, m := range msgs {
		rooms, seqs, users, bodies, ids, tss = append(rooms, m.Room), append(seqs, m.Seq), append(users, m.User), append(bodies, m.Text), append(ids, m.ID), append(tss, m.TS)
	}
	b.columns[0], b.columns[1], b.columns[2], b.columns[3], b.seqs, b.tss = rooms, users, bodies, ids, seqs, tss
	sd, err := conn.Prepare(ctx, insertStatement, insertSQL)
	if err != nil {
		return nil, err
	}
	types := conn.TypeMap()
	var ends [6]int
	b.params = b.params[:0]
	for i, v := range []any{rooms, seqs, users, bodies, ids, tss} {
		if b.params, err = types.Encode(insertOIDs[i], pgx.BinaryFormatCode, v, b.params); err != nil {
			return nil, fmt.Errorf("encode parameter $%d: %w", i+1, err)
		}
		ends[i] = len(b.params)
	}
	b.values = b.values[:0]
	for i, end := range ends {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		b.values = append(b.values, b.params[start:end])
	}
	b.inserted = append(b.inserted[:0], make([]bool, n)...)
	rr := conn.PgConn().ExecPrepared(ctx, sd.Name, b.values, insertFormats, returnedFormats)
	next := 0 // rows come back in the batch's order as a rule: look there first
	for rr.NextRow() {
		row := rr.Values()
		if len(row) != 2 || len(row[1]) != 8 {
			continue // not the shape asked for: Close reports why
		}
		room, seq := row[0], int64(binary.BigEndian.Uint64(row[1]))
		for j := range n {
			if i := (next + j) % n; !b.inserted[i] && msgs[i].Seq == seq && msgs[i].Room == string(room) {
				b.inserted[i], next = true, i+1
				break
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return b.inserted, nil
}

// copyOfInserted tells whether msgs[i] has the room and seq of a message
// before it that was stored: the insert stored the first of them only, and
// the others count as stored with it.
func (b *insertBuffer) copyOfInserted(msgs []protocol.Message, i int) bool {
	for j := range i {
		if b.inserted[j] && msgs[j].Room == msgs[i].Room && msgs[j].Seq == msgs[i].Seq {
			return true
		}
	}
	return false
}

// conflict says why m was not inserted: "" when the row under its room and
// seq is m itself (or a copy of m earlier in the same batch).
func conflict(ctx context.Context, tx pgx.Tx, m protocol.Message) (string, error) {
	var user, body, id string
	var ts time.Time
	err := tx.QueryRow(ctx, `SELECT user_id, body, client_id, ts FROM messages WHERE room = $1 AND seq = $2`, m.Room, m.Seq).Scan(&user, &body, &id, &ts)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return RejectDuplicateID, nil // only the sender-id index refuses a free seq
	case err != nil:
		return "", fmt.Errorf("compare %s seq %d with its stored row: %w", m.Room, m.Seq, err)
	case user == m.User && body == m.Text && id == m.ID && ts.Equal(m.TS):
		return "", nil
	}
	return RejectSeqTaken, nil
}

// Range returns the oldest limit of the room's stored messages with after <
// seq <= upto, oldest first: a catch-up reads history a page at a time.
func (s *Store) Range(ctx context.Context, room string, after, upto int64, limit int) ([]protocol.Message, error) {
	return s.query(ctx, fmt.Sprintf("history of %s after %d", room, after), `
		SELECT room, seq, user_id, body, client_id, ts FROM messages
		WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4`, room, after, upto, limit)
}

// Before returns the newest limit messages with seq < before, oldest first.
func (s *Store) Before(ctx context.Context, room string, before int64, limit int) ([]protocol.Message, error) {
	return s.query(ctx, fmt.Sprintf("history of %s before %d", room, before), `
		SELECT * FROM (
			SELECT room, seq, user_id, body, client_id, ts FROM messages
			WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
		) newest ORDER BY seq`, room, before, limit)
}

// query runs a history read on the read pool.
func (s *Store) query(ctx context.Context, what, sql string, args ...any) ([]protocol.Message, error) {
	rows, err := s.reads.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (protocol.Message, error) {
		var m protocol.Message
		err := r.Scan(&m.Room, &m.Seq, &m.User, &m.Text, &m.ID, &m.TS)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return msgs, nil
}
