-- Identity for the HTTP API: sessions that remember their workspace, one pending invitation
-- per address, and the cross-workspace look-ups that sign-in needs, done by loom_locator
-- (see 0002) so that loom_app never sees another workspace's rows.

-- A refresh token belongs to one session in one workspace. refresh_tokens is global (no
-- RLS), so the column must not be called workspace_id: that name marks tenant tables.
ALTER TABLE refresh_tokens ADD COLUMN session_workspace uuid REFERENCES workspaces (id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id, session_workspace);

-- Inviting an address again replaces its pending invitation (and so its token).
CREATE UNIQUE INDEX invitations_pending ON invitations (workspace_id, lower(email))
    WHERE accepted_at IS NULL;

-- What loom_locator may read: only the columns its functions use.
GRANT SELECT (workspace_id, user_id, role, created_at) ON memberships TO loom_locator;
CREATE POLICY locate ON memberships FOR SELECT TO loom_locator USING (true);
GRANT SELECT (id, workspace_id, prefix) ON api_keys TO loom_locator;
CREATE POLICY locate ON api_keys FOR SELECT TO loom_locator USING (true);
GRANT SELECT (id, workspace_id, token_hash) ON invitations TO loom_locator;
CREATE POLICY locate ON invitations FOR SELECT TO loom_locator USING (true);

-- The workspaces a user belongs to and the role in each, oldest membership first (sign-in
-- picks the first when no workspace is named).
CREATE FUNCTION loom_locate_memberships(p_user uuid)
    RETURNS TABLE (workspace_id uuid, role text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT m.workspace_id, m.role FROM memberships m
        WHERE m.user_id = p_user
        ORDER BY m.created_at, m.workspace_id
    $$;

-- The key with this public prefix; its secret is checked in a tenant transaction.
CREATE FUNCTION loom_locate_api_key(p_prefix text)
    RETURNS TABLE (workspace_id uuid, key_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT k.workspace_id, k.id FROM api_keys k WHERE k.prefix = p_prefix
    $$;

-- The invitation whose token hashes to p_token_hash.
CREATE FUNCTION loom_locate_invitation(p_token_hash text)
    RETURNS TABLE (workspace_id uuid, invitation_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT i.workspace_id, i.id FROM invitations i WHERE i.token_hash = p_token_hash
    $$;

-- A new owner needs CREATE on the schema at the moment ownership changes; it keeps none.
GRANT CREATE ON SCHEMA public TO loom_locator;
ALTER FUNCTION loom_locate_memberships(uuid) OWNER TO loom_locator;
ALTER FUNCTION loom_locate_api_key(text) OWNER TO loom_locator;
ALTER FUNCTION loom_locate_invitation(text) OWNER TO loom_locator;
REVOKE CREATE ON SCHEMA public FROM loom_locator;

REVOKE ALL ON FUNCTION loom_locate_memberships(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_api_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION loom_locate_invitation(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION loom_locate_memberships(uuid) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_api_key(text) TO loom_app;
GRANT EXECUTE ON FUNCTION loom_locate_invitation(text) TO loom_app;
