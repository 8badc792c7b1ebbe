-- The public catalog: providers, countries, services and one price row per
-- provider x country x service. Codes are the slugs `shared::Slug` accepts.

CREATE TABLE providers (
    id         INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE countries (
    id   INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name TEXT NOT NULL
);

CREATE TABLE services (
    id   INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code TEXT NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name TEXT NOT NULL
);

-- The primary key serves the single-price lookup, the bulk lookup of one provider and country,
-- and the "countries of a provider" probe; the (provider, service) index serves the "services
-- of a provider" probe. country_id and service_id get their own indexes because the guide asks
-- for an index on every foreign key (deleting a country or service must not scan prices).
CREATE TABLE prices (
    provider_id INT NOT NULL REFERENCES providers (id),
    country_id  INT NOT NULL REFERENCES countries (id),
    service_id  INT NOT NULL REFERENCES services (id),
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    stock       BIGINT NOT NULL CHECK (stock >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, country_id, service_id)
);
CREATE INDEX prices_provider_service_idx ON prices (provider_id, service_id);
CREATE INDEX prices_country_idx ON prices (country_id);
CREATE INDEX prices_service_idx ON prices (service_id);
