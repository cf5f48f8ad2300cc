-- ringback schema, version 5: a number may have several live listings, and each case is
-- its own listing.

-- A court may list one number under several cases; paying one case clears that case's
-- listing only. At most one open listing per court, number and case. (Version 1 allowed
-- one per court and number, which is stricter: every existing row satisfies this.)
DROP INDEX listings_open_per_court;
CREATE UNIQUE INDEX listings_open_per_case ON listings (court_id, number, case_ref)
    WHERE status IN ('active', 'suspended');

-- What a node's index holds: one row per live listing (active and not yet expired), no
-- longer one merged row per number. A number is announced while one of its listings is
-- effective (effective_at <= now < expires_at), with that listing's recording (else the
-- court's default, else 0: the shipped one) and credited to that listing; when several
-- are, the earliest-listed wins (ORDER BY number, listed_at, listing_id). The node makes
-- that choice at lookup time, so a listing's expiry or the end of a notice period changes
-- what callers hear without any change in the database.
DROP VIEW index_entries;
CREATE VIEW index_entries AS
SELECT l.number,
       l.id AS listing_id,
       coalesce(l.recording_id, c.default_recording_id, 0) AS recording_id,
       floor(extract(epoch FROM l.effective_at))::int8 AS effective_epoch,
       ceil(extract(epoch FROM l.expires_at))::int8 AS expires_epoch,
       l.listed_at
FROM listings l
JOIN courts c ON c.id = l.court_id
WHERE l.status = 'active' AND l.expires_at > now();
