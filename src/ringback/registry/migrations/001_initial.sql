-- ringback schema, version 1.
-- Numbers are E.164 without '+', as bigint. Times are timestamptz.

CREATE TABLE courts (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                 text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    -- Kept in clear: the payment hook's HMAC cannot be checked against a hash.
    webhook_secret       text NOT NULL,
    default_recording_id bigint,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    prefix      text NOT NULL,                  -- first characters, to name a token in logs and lists
    role        text NOT NULL CHECK (role IN ('operator', 'court', 'switch')),
    court_id    uuid REFERENCES courts (id),
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'court') = (court_id IS NOT NULL))
);

CREATE TABLE recordings (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    court_id          uuid REFERENCES courts (id),  -- NULL: shipped with ringback
    name              text NOT NULL,
    original_filename text,
    original_format   text,
    original_bytes    bigint,
    original_sha256   bytea,
    duration_ms       integer NOT NULL CHECK (duration_ms > 0),
    pcm               bytea NOT NULL,             -- what callers hear: 8 kHz mono s16le
    loudness_lufs     real,
    created_at        timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE courts ADD FOREIGN KEY (default_recording_id) REFERENCES recordings (id);

CREATE TABLE listings (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number        bigint NOT NULL CHECK (number BETWEEN 1000000 AND 999999999999999),
    court_id      uuid NOT NULL REFERENCES courts (id),
    case_ref      text NOT NULL CHECK (length(case_ref) BETWEEN 1 AND 200),
    recording_id  bigint REFERENCES recordings (id),
    -- 'expired' is also derived from expires_at at read time (see listings_view), so no
    -- sweep job is needed for correctness.
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'suspended', 'cleared', 'expired')),
    listed_at     timestamptz NOT NULL DEFAULT now(),
    effective_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    cleared_at    timestamptz,
    clear_reason  text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (expires_at > effective_at)
);
-- At most one open listing of a number per court; several courts may list one number.
CREATE UNIQUE INDEX listings_open_per_court ON listings (court_id, number)
    WHERE status IN ('active', 'suspended');
CREATE INDEX listings_active_number ON listings (number) WHERE status = 'active';
CREATE INDEX listings_court_case ON listings (court_id, case_ref);

CREATE VIEW listings_view AS
SELECT l.*,
       CASE WHEN l.status IN ('active', 'suspended') AND l.expires_at <= now() THEN 'expired'
            ELSE l.status END AS effective_status
FROM listings l;

CREATE TABLE payment_events (
    court_id     uuid NOT NULL REFERENCES courts (id),
    payment_id   text NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 200),
    case_ref     text NOT NULL,
    paid_at      timestamptz NOT NULL,
    amount       numeric,
    currency     text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    result       jsonb NOT NULL,
    PRIMARY KEY (court_id, payment_id)
);

-- Proof of play. No caller number unless the operator turns that on.
CREATE TABLE announcements (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    listing_id    bigint REFERENCES listings (id),
    court_id      uuid REFERENCES courts (id),
    recording_id  bigint REFERENCES recordings (id),
    node          text NOT NULL,
    codec         text NOT NULL,
    caller        text,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    outcome       text NOT NULL CHECK (outcome IN ('completed', 'cancelled', 'failed'))
);
CREATE INDEX announcements_court_started ON announcements (court_id, started_at);

-- ---------------------------------------------------------------- change feed
-- Every change to the set of announced numbers appends (seq, number). seq comes from a
-- one-row counter whose row lock is held to commit, so sequence order is commit order and
-- there are no gaps: a node that has seen seq N has seen every change up to N.
CREATE TABLE feed_counter (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_seq  bigint NOT NULL
);
INSERT INTO feed_counter (last_seq) VALUES (0);

CREATE TABLE change_feed (
    seq     bigint PRIMARY KEY,
    number  bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION feed_append(numbers bigint[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    distinct_numbers bigint[] := ARRAY(SELECT DISTINCT n FROM unnest(numbers) AS n ORDER BY n);
    n_changes bigint := cardinality(distinct_numbers);
    new_last bigint;
BEGIN
    IF n_changes = 0 THEN
        RETURN;
    END IF;
    UPDATE feed_counter SET last_seq = last_seq + n_changes RETURNING last_seq INTO new_last;
    INSERT INTO change_feed (seq, number)
    SELECT new_last - n_changes + ordinality, n
    FROM unnest(distinct_numbers) WITH ORDINALITY AS t (n, ordinality);
    PERFORM pg_notify('ringback_feed', new_last::text);
END $$;

CREATE FUNCTION listings_feed_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM feed_append(ARRAY(SELECT number FROM new_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION listings_feed_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM feed_append(ARRAY(SELECT number FROM old_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION listings_feed_both() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM feed_append(ARRAY(SELECT number FROM new_rows UNION SELECT number FROM old_rows));
    RETURN NULL;
END $$;

CREATE TRIGGER listings_feed_insert AFTER INSERT ON listings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION listings_feed_new();
CREATE TRIGGER listings_feed_update AFTER UPDATE ON listings
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION listings_feed_both();
CREATE TRIGGER listings_feed_delete AFTER DELETE ON listings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION listings_feed_old();

-- A court's default recording decides what its listed numbers play: re-announce them.
CREATE FUNCTION courts_feed_default_recording() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.default_recording_id IS DISTINCT FROM OLD.default_recording_id THEN
        PERFORM feed_append(ARRAY(
            SELECT number FROM listings WHERE court_id = NEW.id AND status = 'active'));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER courts_feed AFTER UPDATE OF default_recording_id ON courts
    FOR EACH ROW EXECUTE FUNCTION courts_feed_default_recording();

-- What a node's index holds for a number: the first-listed active listing decides the
-- recording; the number is announced from the earliest effective_at to the latest
-- expires_at of its active listings, so it stays announced until every court clears it.
CREATE VIEW index_entries AS
SELECT number, listing_id, recording_id, effective_epoch, expires_epoch
FROM (
    SELECT l.number,
           l.id AS listing_id,
           coalesce(l.recording_id, c.default_recording_id, 0) AS recording_id,
           floor(extract(epoch FROM min(l.effective_at) OVER w))::int8 AS effective_epoch,
           ceil(extract(epoch FROM max(l.expires_at) OVER w))::int8 AS expires_epoch,
           row_number() OVER (w ORDER BY l.listed_at, l.id) AS rank
    FROM listings l
    JOIN courts c ON c.id = l.court_id
    WHERE l.status = 'active' AND l.expires_at > now()
    WINDOW w AS (PARTITION BY l.number)
) ranked
WHERE rank = 1;

-- ---------------------------------------------------------------- audit trail
-- Append-only: UPDATE, DELETE and TRUNCATE are refused by triggers. Each row carries the
-- hash of the previous row; audit_head serialises writers so the chain has no forks.
CREATE TABLE audit_head (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id    bigint NOT NULL,
    last_hash  bytea NOT NULL
);
INSERT INTO audit_head (last_id, last_hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_events (
    id         bigint PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    court_id   uuid,
    action     text NOT NULL,
    entity     text NOT NULL,
    before     jsonb,
    after      jsonb,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE INDEX audit_events_court ON audit_events (court_id, id);

-- The exact bytes hashed; `ringback audit verify` recomputes them independently in Python.
CREATE FUNCTION audit_digest(prev bytea, e audit_events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(convert_to(concat_ws('|',
        encode(prev, 'hex'),
        e.id::text,
        to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor,
        coalesce(e.court_id::text, ''),
        e.action,
        e.entity,
        coalesce(e.before::text, 'null'),
        coalesce(e.after::text, 'null')), 'UTF8'))
$$;

CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM audit_head FOR UPDATE;
    NEW.id := head.last_id + 1;
    NEW.at := date_trunc('microseconds', clock_timestamp());
    NEW.prev_hash := head.last_hash;
    NEW.hash := audit_digest(head.last_hash, NEW);
    UPDATE audit_head SET last_id = NEW.id, last_hash = NEW.hash;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
