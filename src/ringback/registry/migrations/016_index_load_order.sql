-- A full index load (issue 14 items 3 and 6: 15 M numbers, every node again after a
-- national import) reads every live listing in the index's order: number, then
-- earliest-listed first. Two costs went at PostgreSQL's side of it:
--
-- * listings_number (number, id) gave the numbers in order, but each number's rows were
--   sorted again by listed_at (an incremental sort over every row). An index in the
--   load's own order makes it a plain index scan; it answers every lookup by number as
--   the old one did, so it replaces it (no extra index for a bulk import to maintain).
-- * two epochs computed per row: the load now reads the times themselves (new columns at
--   the end of the view), rounded to whole seconds by the node (registry/index_copy.py).
--   The epoch columns stay for the catch-up's few rows and for reading by hand.
CREATE OR REPLACE VIEW index_entries AS
SELECT l.number,
       l.id AS listing_id,
       coalesce(l.recording_id, c.default_recording_id, 0) AS recording_id,
       floor(date_part('epoch', l.effective_at))::int8 AS effective_epoch,
       ceil(date_part('epoch', l.expires_at))::int8 AS expires_epoch,
       l.listed_at,
       l.effective_at,
       l.expires_at
FROM listings l
JOIN courts c ON c.id = l.court_id
WHERE l.status = 'active' AND l.expires_at > now();

CREATE INDEX listings_number_listed ON listings (number, listed_at, id);
DROP INDEX listings_number;
