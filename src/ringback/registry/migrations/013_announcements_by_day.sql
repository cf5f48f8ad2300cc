-- Proof of play at national scale (issue 14 item 5).
--
-- 1. `announcements` becomes a table partitioned by range of started_at, one partition per
--    UTC day (announcements_YYYYMMDD) plus a default partition that takes any row whose day
--    has no partition yet, so a write never fails for want of one. Old days are dropped as a
--    whole (announcements.retention_days) instead of deleted row by row.
-- 2. Rollups: counts per UTC hour, court and outcome (announcement_hourly) and per court and
--    outcome (announcement_totals), kept by a statement trigger in the same transaction as
--    every insert. /v1/stats, the hourly webhook events and the portal's per-day chart read
--    them instead of scanning raw rows. Rollups are never dropped: they outlive the raw rows,
--    so the counts stay right after a day is dropped for retention.
-- 3. Only the owner can create or drop partitions; the runtime role (migration 009) calls
--    two SECURITY DEFINER functions for that. The runtime role may read and insert proof of
--    play but never update or delete it; the only way rows go is
--    announcements_expire_oldest(), which keeps at least 30 days and writes every drop to
--    the audit trail.
--
-- Existing rows are copied into the new table (ids kept), each into its day's partition.

-- ------------------------------------------------------------------ the old table aside
ALTER TABLE announcements RENAME TO announcements_unpartitioned;
ALTER TABLE announcements_unpartitioned
    RENAME CONSTRAINT announcements_pkey TO announcements_unpartitioned_pkey;
DROP INDEX announcements_court_started;
DROP INDEX announcements_court_outcome;  -- /v1/stats reads the rollups now

-- ------------------------------------------------------------------ the partitioned table
-- Same columns in the same order. The id comes from a plain sequence (portable to every
-- PostgreSQL >= 13; identity columns on partitioned tables need 17).
CREATE SEQUENCE announcements_seq AS bigint;
CREATE TABLE announcements (
    id                 bigint NOT NULL DEFAULT nextval('announcements_seq'),
    listing_id         bigint REFERENCES listings (id),
    court_id           uuid REFERENCES courts (id),
    recording_id       bigint REFERENCES recordings (id),
    node               text NOT NULL,
    codec              text NOT NULL,
    caller             text,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    outcome            text NOT NULL CHECK (outcome IN ('completed', 'cancelled', 'failed')),
    media_destination  text,
    mode               text NOT NULL DEFAULT 'redirect' CHECK (mode IN ('redirect', 'ringback')),
    stop_reason        text,
    answered           boolean,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
ALTER SEQUENCE announcements_seq OWNED BY announcements.id;
CREATE INDEX announcements_court_started ON announcements (court_id, started_at);
CREATE TABLE announcements_default PARTITION OF announcements DEFAULT;

-- ------------------------------------------------------------------ rollups
CREATE TABLE announcement_hourly (
    hour      timestamptz NOT NULL,  -- start of the UTC hour the warning started in
    court_id  uuid,                  -- NULL: the listing was gone when the row was written
    outcome   text NOT NULL,
    n         bigint NOT NULL
);
CREATE UNIQUE INDEX announcement_hourly_key ON announcement_hourly
    (hour, (coalesce(court_id, '00000000-0000-0000-0000-000000000000'::uuid)), outcome);
CREATE INDEX announcement_hourly_court ON announcement_hourly (court_id, hour);

CREATE TABLE announcement_totals (
    court_id  uuid,
    outcome   text NOT NULL,
    n         bigint NOT NULL
);
CREATE UNIQUE INDEX announcement_totals_key ON announcement_totals
    ((coalesce(court_id, '00000000-0000-0000-0000-000000000000'::uuid)), outcome);

-- Keys are upserted in sorted order so that two nodes' flushes never deadlock.
CREATE FUNCTION announcements_rollup() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO announcement_hourly AS h (hour, court_id, outcome, n)
    SELECT date_trunc('hour', started_at, 'UTC'), court_id, outcome, count(*)
    FROM added GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, (coalesce(court_id, '00000000-0000-0000-0000-000000000000'::uuid)),
                 outcome)
    DO UPDATE SET n = h.n + excluded.n;
    INSERT INTO announcement_totals AS t (court_id, outcome, n)
    SELECT court_id, outcome, count(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT ((coalesce(court_id, '00000000-0000-0000-0000-000000000000'::uuid)), outcome)
    DO UPDATE SET n = t.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER announcements_rollup AFTER INSERT ON announcements
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION announcements_rollup();

-- ------------------------------------------------------------------ partitions
-- One day's partition (UTC), unless it exists. Made as a table of its own, then attached:
-- ATTACH holds only a SHARE UPDATE EXCLUSIVE lock on `announcements` (inserts and reads go
-- on), where CREATE TABLE ... PARTITION OF would hold an ACCESS EXCLUSIVE one. Rows of that
-- day already in the default partition (written while the day was missing) move into it.
-- Returns true if made.
CREATE FUNCTION announcements_create_day(for_day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '5s'
AS $$
DECLARE
    part text := 'announcements_' || to_char(for_day, 'YYYYMMDD');
    lo timestamptz := for_day::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (for_day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(7401013);
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE announcements INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS)', part);
    EXECUTE format('WITH moved AS (DELETE FROM announcements_default '
                   'WHERE started_at >= $1 AND started_at < $2 RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved', part) USING lo, hi;
    EXECUTE format('ALTER TABLE announcements ATTACH PARTITION %I '
                   'FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    -- the runtime role reaches the rows through `announcements` only
    EXECUTE format('REVOKE ALL ON %I FROM ringback_runtime', part);
    RETURN true;
END $$;

-- Drop the oldest day older than `retention_days` (days before today, UTC), or delete the
-- default partition's rows that old; one step per call (each its own short lock on the
-- table), audited. Returns the day dropped and its row count, or no row when nothing is
-- due. Refuses to keep less than 30 days, whatever the caller asks.
CREATE FUNCTION announcements_expire_oldest(retention_days integer)
RETURNS TABLE (expired_day date, expired_rows bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET lock_timeout = '5s'
AS $$
DECLARE
    cutoff date;
    oldest text;
    counted bigint;
BEGIN
    IF retention_days IS NULL OR retention_days < 30 THEN
        RAISE EXCEPTION 'announcements: retention_days must be at least 30, got %',
            retention_days USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7401013);
    cutoff := (now() AT TIME ZONE 'UTC')::date - retention_days;  -- days before it go
    SELECT c.relname INTO oldest
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'announcements'::regclass
      AND c.relname ~ '^announcements_[0-9]{8}$'
      AND to_date(substr(c.relname, 15), 'YYYYMMDD') < cutoff
    ORDER BY c.relname LIMIT 1;
    IF oldest IS NOT NULL THEN
        expired_day := to_date(substr(oldest, 15), 'YYYYMMDD');
        EXECUTE format('SELECT count(*) FROM %I', oldest) INTO counted;
        EXECUTE format('DROP TABLE %I', oldest);
    ELSE
        DELETE FROM announcements_default
        WHERE started_at < cutoff::timestamp AT TIME ZONE 'UTC';
        GET DIAGNOSTICS counted = ROW_COUNT;
        IF counted = 0 THEN
            RETURN;
        END IF;
        expired_day := NULL;  -- rows of several days, from the default partition
    END IF;
    expired_rows := counted;
    INSERT INTO audit_events (actor, court_id, action, entity, before, after, prev_hash, hash)
    VALUES ('system', NULL, 'announcements.expire',
            'announcements:' || coalesce(expired_day::text, 'default'),
            jsonb_build_object('day', expired_day, 'rows', counted),
            jsonb_build_object('retention_days', retention_days,
                               'kept_from', cutoff),
            '', '');
    RETURN NEXT;
END $$;

-- ------------------------------------------------------------------ the old rows
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date
             FROM announcements_unpartitioned ORDER BY 1 LOOP
        PERFORM announcements_create_day(d);
    END LOOP;
END $$;
INSERT INTO announcements SELECT * FROM announcements_unpartitioned;  -- rollups: the trigger
SELECT setval('announcements_seq', coalesce(max(id), 0) + 1, false)
FROM announcements_unpartitioned;
DROP TABLE announcements_unpartitioned;

-- ------------------------------------------------------------------ the runtime role
REVOKE ALL ON announcements, announcements_default, announcement_hourly, announcement_totals
    FROM ringback_runtime;
GRANT SELECT, INSERT ON announcements TO ringback_runtime;
GRANT SELECT ON announcement_hourly, announcement_totals TO ringback_runtime;
GRANT USAGE ON SEQUENCE announcements_seq TO ringback_runtime;
REVOKE ALL ON FUNCTION announcements_create_day(date), announcements_expire_oldest(integer),
    announcements_rollup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION announcements_create_day(date), announcements_expire_oldest(integer)
    TO ringback_runtime;
