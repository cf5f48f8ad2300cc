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
