-- Bulk imports at national scale (issue 14 item 6): one change-feed row per import.
--
-- A 15 M-row import used to append 15 M (seq, number) rows to the change feed through the
-- listings triggers, and every node then read and applied them one number at a time. Now
-- the import's transaction sets `ringback.bulk_import` to its id (SET LOCAL): the listings
-- triggers append nothing for its statements, and the import appends one marker row
-- (number NULL, import_id set) just before it commits, in the same commit order as any
-- change. A node reading the marker reloads the numbers of that import's listings
-- (`import_listings`), or its whole index when that is more than its reload threshold.
ALTER TABLE change_feed
    ALTER COLUMN number DROP NOT NULL,
    ADD COLUMN import_id uuid,
    ADD CONSTRAINT change_feed_number_or_import CHECK ((number IS NULL) <> (import_id IS NULL));

-- The import running in this transaction (SET LOCAL ringback.bulk_import), if any.
CREATE FUNCTION feed_bulk_import() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('ringback.bulk_import', true), '')::uuid
$$;

CREATE OR REPLACE FUNCTION listings_feed_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF feed_bulk_import() IS NULL THEN
        PERFORM feed_append(ARRAY(SELECT number FROM new_rows));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION listings_feed_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF feed_bulk_import() IS NULL THEN
        PERFORM feed_append(ARRAY(SELECT number FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION listings_feed_both() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF feed_bulk_import() IS NULL THEN
        PERFORM feed_append(ARRAY(SELECT number FROM new_rows UNION SELECT number FROM old_rows));
    END IF;
    RETURN NULL;
END $$;

-- The marker of the import running in this transaction: call it last, just before COMMIT
-- (the feed_counter row lock it takes is held to the commit and serialises every writer
-- of the feed). Returns the marker's sequence.
CREATE FUNCTION feed_append_import() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    imported uuid := feed_bulk_import();
    new_last bigint;
BEGIN
    IF imported IS NULL THEN
        RAISE EXCEPTION 'feed_append_import: ringback.bulk_import is not set';
    END IF;
    UPDATE feed_counter SET last_seq = last_seq + 1 RETURNING last_seq INTO new_last;
    INSERT INTO change_feed (seq, number, import_id) VALUES (new_last, NULL, imported);
    PERFORM pg_notify('ringback_feed', new_last::text);
    RETURN new_last;
END $$;

-- listings_number (number, id) answers every lookup by number; the partial index on active
-- listings' numbers only cost every insert (about 8 % of a bulk import's).
DROP INDEX listings_active_number;

-- The listings' references to courts and recordings, checked once per statement instead of
-- once per row: a foreign key runs one lookup per inserted row (about 15 % of a bulk
-- import: 15 M lookups of the same court). Same guarantee, both ways: a listing naming a
-- court or recording that does not exist is refused, and so is deleting a court or a
-- recording a listing names (foreign_key_violation, like the constraints they replace).
ALTER TABLE listings
    DROP CONSTRAINT listings_court_id_fkey,
    DROP CONSTRAINT listings_recording_id_fkey;

CREATE FUNCTION listings_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    courts_named uuid[] := ARRAY(SELECT DISTINCT court_id FROM new_rows);
    recordings_named bigint[];
    missing text;
BEGIN
    -- FOR KEY SHARE, as a foreign key's check: the rows named cannot be deleted until we commit.
    SELECT 'court ' || n INTO missing FROM unnest(courts_named) n
    WHERE n NOT IN (SELECT id FROM courts WHERE id = ANY (courts_named) FOR KEY SHARE) LIMIT 1;
    IF missing IS NULL THEN
        recordings_named := ARRAY(
            SELECT DISTINCT recording_id FROM new_rows WHERE recording_id IS NOT NULL);
        SELECT 'recording ' || n INTO missing FROM unnest(recordings_named) n
        WHERE n NOT IN (SELECT id FROM recordings WHERE id = ANY (recordings_named)
                        FOR KEY SHARE) LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'listings: % does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER listings_references_insert AFTER INSERT ON listings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION listings_check_references();
CREATE TRIGGER listings_references_update AFTER UPDATE ON listings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION listings_check_references();

CREATE FUNCTION refuse_court_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM listings WHERE court_id = OLD.id) THEN
        RAISE EXCEPTION 'court % is named by a listing', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;
CREATE FUNCTION refuse_recording_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM listings WHERE recording_id = OLD.id) THEN
        RAISE EXCEPTION 'recording % is named by a listing', OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER courts_referenced BEFORE DELETE ON courts
    FOR EACH ROW EXECUTE FUNCTION refuse_court_delete();
CREATE TRIGGER recordings_referenced BEFORE DELETE ON recordings
    FOR EACH ROW EXECUTE FUNCTION refuse_recording_delete();
