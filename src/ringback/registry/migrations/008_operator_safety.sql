-- Operator safety (issue 10): revocations reach every node at once, secrets rotate with an
-- overlap, bulk imports are attributable.

-- A token revoked through any path (API, portal, CLI, SQL) is announced on the
-- `ringback_tokens` channel; every node drops its cached tokens when it hears it.
CREATE FUNCTION announce_token_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ringback_tokens', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER api_tokens_revoked
    AFTER UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION announce_token_revocation();

-- A court's payment-hook secret rotates with an overlap: the previous secret still
-- verifies until webhook_secret_previous_until, so the payment system can switch over.
ALTER TABLE courts
    ADD COLUMN webhook_secret_previous text,
    ADD COLUMN webhook_secret_previous_until timestamptz,
    ADD COLUMN webhook_secret_rotated_at timestamptz;
-- An event subscription's secret: deliveries are signed with the new one at once; the
-- receiver accepts both for the overlap it chooses (docs/operations.md).
ALTER TABLE event_subscriptions ADD COLUMN secret_rotated_at timestamptz;

-- A listing created or changed by a bulk import names it: `import_id` is the import that
-- last wrote the listing, `import_listings` every import that ever did (its history).
-- No foreign keys: their check, row by row, would add a third to a million-row import,
-- and neither imports nor listings are ever deleted.
ALTER TABLE listings ADD COLUMN import_id uuid;
CREATE TABLE import_listings (
    import_id   uuid NOT NULL,
    listing_id  bigint NOT NULL,
    PRIMARY KEY (import_id, listing_id)
);
CREATE INDEX import_listings_listing ON import_listings (listing_id);
