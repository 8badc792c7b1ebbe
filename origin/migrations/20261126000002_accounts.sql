-- Users and their prepaid balance, the pool of phone numbers, activations (purchases) and the
-- ledger of money movements. Money is BIGINT minor units (US cents).

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    -- The CHECK is the last line against an overdraft: a racing debit fails instead of going negative.
    balance_cents BIGINT NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE numbers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id  INT NOT NULL REFERENCES providers (id),
    country_id   INT NOT NULL REFERENCES countries (id),
    phone_number TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'assigned', 'retired')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Allocation picks an available number of one provider and country.
CREATE INDEX numbers_available_idx ON numbers (provider_id, country_id) WHERE status = 'available';
CREATE INDEX numbers_country_idx ON numbers (country_id);

CREATE TABLE activations (
    id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                BIGINT NOT NULL REFERENCES users (id),
    number_id              BIGINT NOT NULL REFERENCES numbers (id),
    provider_id            INT NOT NULL REFERENCES providers (id),
    country_id             INT NOT NULL REFERENCES countries (id),
    service_id             INT NOT NULL REFERENCES services (id),
    provider_activation_id TEXT NOT NULL,
    price_cents            BIGINT NOT NULL CHECK (price_cents >= 0),
    status                 TEXT NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'received', 'completed', 'cancelled', 'expired')),
    idempotency_key        TEXT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);
-- The guide's Activation indexes: userId (with id for newest-first pagination), numberId,
-- providerActivationId, status; plus the remaining foreign keys.
CREATE INDEX activations_user_idx ON activations (user_id, id DESC);
CREATE INDEX activations_number_idx ON activations (number_id);
CREATE INDEX activations_provider_activation_idx ON activations (provider_activation_id);
CREATE INDEX activations_status_idx ON activations (status);
CREATE INDEX activations_provider_idx ON activations (provider_id);
CREATE INDEX activations_country_idx ON activations (country_id);
CREATE INDEX activations_service_idx ON activations (service_id);

CREATE TABLE transactions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    type          TEXT NOT NULL CHECK (type IN ('credit', 'purchase', 'refund')),
    -- Signed: credits and refunds positive, purchases negative. The sum per user is the balance.
    amount_cents  BIGINT NOT NULL,
    activation_id BIGINT REFERENCES activations (id),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The guide's Transaction indexes: userId, type, createdAt; plus the activation foreign key.
CREATE INDEX transactions_user_idx ON transactions (user_id);
CREATE INDEX transactions_type_idx ON transactions (type);
CREATE INDEX transactions_created_at_idx ON transactions (created_at);
CREATE INDEX transactions_activation_idx ON transactions (activation_id);
