-- A full index load reads every active listing through `index_entries` (issue 14 item 3:
-- from PostgreSQL in < 30 s at 15 M numbers). Since PostgreSQL 14 `extract(epoch ...)`
-- returns numeric, and two numeric floor/ceil per row were about a third of the load's
-- time in PostgreSQL (2 M rows: 4.5 s against 2.7 s). `date_part` returns float8, exact
-- enough here: timestamps have microsecond resolution and a float8 epoch before 2106
-- (where the index's uint32 epochs end anyway) resolves better than 1 µs, so floor and
-- ceil give the same whole seconds (tests/integration/test_schema.py checks the edges).
CREATE OR REPLACE VIEW index_entries AS
SELECT l.number,
       l.id AS listing_id,
       coalesce(l.recording_id, c.default_recording_id, 0) AS recording_id,
       floor(date_part('epoch', l.effective_at))::int8 AS effective_epoch,
       ceil(date_part('epoch', l.expires_at))::int8 AS expires_epoch,
       l.listed_at
FROM listings l
JOIN courts c ON c.id = l.court_id
WHERE l.status = 'active' AND l.expires_at > now();
