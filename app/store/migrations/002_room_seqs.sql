-- Seqs are handed out by Redis from blocks reserved here first, so a room
-- whose Redis state is lost restarts above every seq it ever handed out.
CREATE TABLE IF NOT EXISTS room_seqs (
    room text   PRIMARY KEY,
    hi   bigint NOT NULL
);
-- A send retried after Redis lost its dedupe key is found by its id.
CREATE INDEX IF NOT EXISTS messages_sender_id ON messages (room, user_id, client_id) WHERE client_id <> '';
