-- Where a room's counter restarted above a fresh reservation (a reseed after
-- Redis lost the room): the seqs between the room's last message below a
-- floor and the floor were never handed out, so a catch-up skips them
-- instead of announcing them as lost.
CREATE TABLE IF NOT EXISTS room_floors (
    room  text        NOT NULL,
    floor bigint      NOT NULL,
    at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, floor)
);
-- Fences for Redis primaries (publish.lua): a primary that comes back after
-- being replaced gets a fence above every earlier one, which makes its rooms
-- reseed instead of counting on from state that is stale.
CREATE SEQUENCE IF NOT EXISTS redis_fences;
-- Messages the persist writer could not store as they came, kept for an
-- operator instead of dropped: reason seq_taken (another message already has
-- the room and seq) or duplicate_id (the sender's id is stored under another
-- seq).
CREATE TABLE IF NOT EXISTS rejected_messages (
    room        text        NOT NULL,
    seq         bigint      NOT NULL,
    user_id     text        NOT NULL,
    body        text        NOT NULL,
    client_id   text        NOT NULL,
    ts          timestamptz NOT NULL,
    reason      text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, seq, user_id, client_id)
);
-- A sender's id names one stored message: a retry that raced the writer of
-- the original (the recheck after a reseed) is refused by the index, not
-- stored twice. Copies stored before it existed move to rejected_messages,
-- the lowest seq staying.
WITH copies AS (
    DELETE FROM messages m USING messages o
    WHERE m.client_id <> '' AND m.room = o.room AND m.user_id = o.user_id
      AND m.client_id = o.client_id AND m.seq > o.seq
    RETURNING m.room, m.seq, m.user_id, m.body, m.client_id, m.ts)
INSERT INTO rejected_messages (room, seq, user_id, body, client_id, ts, reason)
SELECT room, seq, user_id, body, client_id, ts, 'duplicate_id' FROM copies
ON CONFLICT DO NOTHING;
DROP INDEX IF EXISTS messages_sender_id;
CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_id_once ON messages (room, user_id, client_id) WHERE client_id <> '';
