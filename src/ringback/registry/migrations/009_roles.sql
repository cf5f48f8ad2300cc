-- Tamper evidence that survives the service's own database role (issue 10).
--
-- Two roles: the owner (whoever runs the migrations: `ringback migrate` with
-- database.owner_url) owns every table, function and trigger; the runtime role
-- `ringback_runtime` (a group: the service's login is a member of it) may read and write
-- the data but is not an owner, so it cannot disable, drop or replace the audit triggers,
-- and it may only INSERT into the audit trail. The chain trigger runs as its owner, so the
-- runtime role needs no write access to audit_head either.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ringback_runtime') THEN
        CREATE ROLE ringback_runtime NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO ringback_runtime;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ringback_runtime;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ringback_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ringback_runtime;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO ringback_runtime;

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM ringback_runtime;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_head FROM ringback_runtime;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM ringback_runtime;
ALTER FUNCTION audit_chain() SECURITY DEFINER SET search_path = public, pg_temp;

-- Checkpoints of the chain's head: exported periodically (an audit.checkpoint event and a
-- metric) so a chain rewritten later, hashes and all, no longer matches what was exported.
CREATE TABLE audit_checkpoints (
    seq   bigint PRIMARY KEY,
    hash  bytea NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON audit_checkpoints TO ringback_runtime;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_checkpoints FROM ringback_runtime;
