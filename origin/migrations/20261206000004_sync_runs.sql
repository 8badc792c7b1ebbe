-- The catalog sync's log: one row per run of one provider, so `origin check` can say when each
-- provider last synced and how it went.
CREATE TABLE sync_runs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider    TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('applied', 'unchanged', 'held', 'failed')),
    offers      BIGINT NOT NULL CHECK (offers >= 0),
    changed     BIGINT NOT NULL CHECK (changed >= 0),
    detail      TEXT NOT NULL DEFAULT '',
    duration_ms BIGINT NOT NULL CHECK (duration_ms >= 0),
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sync_runs_provider_finished_idx ON sync_runs (provider, finished_at DESC);

-- `PUT /v1/admin/prices` with an Idempotency-Key: the first answer, replayed for a retry with
-- the same key and body (another body with the key is a 409). Written in the transaction that
-- applies the prices, so a request is recorded exactly when it took effect.
CREATE TABLE bulk_price_requests (
    user_id      BIGINT NOT NULL REFERENCES users (id),
    key          TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    request_hash TEXT NOT NULL,
    response     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
