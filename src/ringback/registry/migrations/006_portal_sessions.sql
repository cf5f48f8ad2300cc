-- Sessions of the court web portal: a court's (or an operator's) token, once checked at
-- sign-in, is exchanged for a random session id kept in an HttpOnly cookie. Only the
-- session id's SHA-256 is stored; revoking the token ends its sessions at once (the join
-- in PortalSessions.get checks the token on every request).
CREATE TABLE portal_sessions (
    id_hash       bytea PRIMARY KEY,
    token_id      bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    csrf          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at);
