-- Who made each ledger entry by hand (the admin who credited), and the Idempotency-Key of that
-- request, so a retried credit lands once. The balance after the entry lets a replay answer
-- exactly what the first request answered.
ALTER TABLE transactions
    ADD COLUMN actor_id        BIGINT REFERENCES users (id),
    ADD COLUMN idempotency_key TEXT,
    ADD COLUMN balance_after   BIGINT;
CREATE UNIQUE INDEX transactions_actor_key_idx ON transactions (actor_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
