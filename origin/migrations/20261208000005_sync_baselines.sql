-- The sync guard's baseline: each provider's median price when a person last confirmed it (or
-- when it was last older than the baseline window). A run whose prices drift too far from it is
-- held, however small each step: many runs of modest cuts cannot walk the catalog to 1 cent.
CREATE TABLE sync_baselines (
    provider_id  INT PRIMARY KEY REFERENCES providers (id),
    median_cents BIGINT NOT NULL CHECK (median_cents >= 0),
    products     INT NOT NULL CHECK (products >= 0),
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
