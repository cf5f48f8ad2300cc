-- ringback schema, version 2: what the court API needs beyond version 1.

-- Why a listing became audible before the notice period ended (a court's stated reason),
-- and why it is suspended (dispute, appeal). Both are also in the audit trail.
ALTER TABLE listings
    ADD COLUMN effective_reason text CHECK (length(effective_reason) <= 1000),
    ADD COLUMN suspend_reason   text CHECK (length(suspend_reason) <= 1000);

-- GET /v1/listings pages by id within a court; GET /v1/listings/{number} shows history.
CREATE INDEX listings_court_id ON listings (court_id, id);
CREATE INDEX listings_number ON listings (number, id);

-- GET /v1/audit?entity=listing:42
CREATE INDEX audit_events_entity ON audit_events (entity, id);

CREATE INDEX api_tokens_court ON api_tokens (court_id, id);
CREATE INDEX announcements_court_outcome ON announcements (court_id, outcome);
