-- ringback schema, version 3: outgoing event webhooks (transactional outbox) and bulk imports.

-- ------------------------------------------------------------------ event outbox
-- An event is written in the same transaction as the change it describes (enqueue_event),
-- together with one delivery row per matching active subscription, so an event can be
-- neither lost nor sent for a change that rolled back.
CREATE TABLE event_subscriptions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url          text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    -- Kept in clear: the HMAC of each delivery is computed with it.
    secret       text NOT NULL,
    -- NULL: every event type.
    event_types  text[],
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

CREATE TABLE event_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type  text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_outbox_created ON event_outbox (created_at);

CREATE TABLE event_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id         bigint NOT NULL REFERENCES event_outbox (id),
    subscription_id  bigint NOT NULL REFERENCES event_subscriptions (id),
    -- pending: never tried; retrying: tried and failed, will be retried at next_attempt_at;
    -- delivered: a 2xx was received; failed: gave up after the maximum number of attempts.
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'retrying', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    -- When the row is due. A worker that claims a row moves this forward by a lease, so a
    -- node that dies mid-delivery only delays the row (it is delivered at least once).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX event_deliveries_status ON event_deliveries (status, created_at, id);
CREATE INDEX event_deliveries_subscription ON event_deliveries (subscription_id, created_at);

-- listing.effective: listings whose deferred effective_at has passed and been announced.
CREATE TABLE event_effective_sent (
    listing_id  bigint PRIMARY KEY REFERENCES listings (id),
    sent_at     timestamptz NOT NULL DEFAULT now()
);
-- Hourly warnings-played totals already emitted (hour = start of the hour, UTC).
CREATE TABLE event_hours_sent (
    hour     timestamptz PRIMARY KEY,
    sent_at  timestamptz NOT NULL DEFAULT now()
);
-- Where the listing.effective scan has got to.
CREATE TABLE event_worker_state (
    only_row            boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    effective_scanned   timestamptz NOT NULL
);
INSERT INTO event_worker_state (effective_scanned) VALUES (now());

CREATE INDEX listings_deferred_effective ON listings (effective_at)
    WHERE status = 'active' AND effective_at > listed_at;

-- ------------------------------------------------------------------ bulk imports
CREATE TABLE imports (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    court_id        uuid NOT NULL REFERENCES courts (id),
    actor           text NOT NULL,
    -- receiving: upload arriving; validating: rows checked and copied to a staging table;
    -- loading: the one INSERT into listings; done | failed.
    status          text NOT NULL DEFAULT 'receiving'
                    CHECK (status IN ('receiving', 'validating', 'loading', 'done', 'failed')),
    filename        text,
    bytes           bigint,
    sha256          bytea,
    rows_processed  bigint NOT NULL DEFAULT 0,
    rows_total      bigint,
    listed          bigint,
    updated         bigint,
    error_line      bigint,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX imports_court ON imports (court_id, created_at);
