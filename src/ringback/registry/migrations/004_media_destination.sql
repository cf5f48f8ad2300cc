-- Proof of play records where the warning's RTP actually went (after any symmetric-RTP
-- latch), so a complaint about unwanted traffic can be checked against the record.
ALTER TABLE announcements ADD COLUMN media_destination text;
