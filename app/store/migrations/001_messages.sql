-- One row per accepted message; (room, seq) is unique, so replays of the
-- persist stream are idempotent.
CREATE TABLE IF NOT EXISTS messages (
    room      text        NOT NULL,
    seq       bigint      NOT NULL,
    user_id   text        NOT NULL,
    body      text        NOT NULL,
    client_id text        NOT NULL DEFAULT '',
    ts        timestamptz NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room, seq)
);
