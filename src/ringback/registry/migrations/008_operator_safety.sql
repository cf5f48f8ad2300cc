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
