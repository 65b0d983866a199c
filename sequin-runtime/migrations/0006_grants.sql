-- Write-through against a hostile application role (the threat model is in
-- ARCHITECTURE.md). What changes from 0002:
--
-- * No secret ever enters a client's session. The proxy no longer lends a
--   statement a key: while it applies a client's statement, a session of
--   Sequin's own (the journal session) holds the advisory lock
--   (GRANT_CLASS, <client backend pid>). The guard lets a session write
--   while a backend whose role is Sequin's holds that lock for it. Locks are
--   not MVCC, so a client whose snapshot is older sees the grant too, and
--   the grant ends the moment Sequin's session lets go (or dies).
-- * Capture cannot be switched off or forged: three statement-level
--   triggers with transition tables record every row a granted statement
--   changed, in `sequin.capture`, which only Sequin's role can write. No
--   setting is consulted. The proxy counts the captured rows against the
--   command tag, so rows written by a function the statement called are
--   seen and refused.
-- * Process keys (Sequin's own sessions, which get theirs in the startup
--   packet) expire unless their process renews them.
--
-- Applied once (`sequin.schema_version`), under a short lock_timeout with
-- retries.

-- The advisory lock class of grants: ASCII 'SQNG'.
-- pg_try_advisory_lock(1397837383, <pid>) shows in pg_locks as
-- classid = 1397837383, objid = <pid>, objsubid = 2.

ALTER TABLE sequin.writer_key ADD COLUMN IF NOT EXISTS expires_at timestamp with time zone;
-- Keys lent to statements (0002) are gone for good, and so are keys of
-- processes that never renew theirs.
DELETE FROM sequin.writer_key WHERE holder = 'statement' OR expires_at IS NULL;

-- The functions that took the process key as a parameter (and so showed it
-- to a client whose statement failed with log_parameter_max_length_on_error
-- set) are removed.
DROP FUNCTION IF EXISTS sequin.lend(text, bytea, regclass);
DROP FUNCTION IF EXISTS sequin.lend(text, bytea);
DROP FUNCTION IF EXISTS sequin.unlend(text, bytea);
DROP FUNCTION IF EXISTS sequin.mark(text, uuid[]);
DROP FUNCTION IF EXISTS sequin.release(text, bytea, uuid[]);

-- Rows changed by granted statements, until the proxy has read them; one
-- row per trigger firing, the changed rows as JSON arrays in the order
-- Postgres changed them (old[i] and new[i] are one row). Unlogged: only the
-- transaction that wrote a row ever needs it, and a server crash ends that
-- transaction anyway. Committed rows are removed by the reconciler.
CREATE UNLOGGED TABLE IF NOT EXISTS sequin.capture (
    id bigserial PRIMARY KEY,
    xid bigint NOT NULL,
    relid oid NOT NULL,
    op text NOT NULL,
    old jsonb,
    new jsonb
);
CREATE INDEX IF NOT EXISTS capture_xid ON sequin.capture (xid, id);

-- Write-through effects kept by a committed (sub)transaction: the id of the
-- capture row of the statement that made them, inserted by
-- sequin.release() only while that capture row exists in the transaction,
-- so a client cannot mark an effect its ROLLBACK TO SAVEPOINT took back.
CREATE TABLE IF NOT EXISTS sequin.write_mark (
    capture_id bigint PRIMARY KEY
);

ALTER TABLE sequin.write_journal ADD COLUMN IF NOT EXISTS capture_id bigint;
-- Intents are journalled before the API call (`intent`); an API refusal
-- leaves `rejected`; an undo that would overwrite another writer's change
-- leaves `conflict`.
ALTER TABLE sequin.write_journal DROP CONSTRAINT IF EXISTS write_journal_state_check;
ALTER TABLE sequin.write_journal ADD CONSTRAINT write_journal_state_check CHECK (state IN
    ('intent', 'applied', 'rejected', 'committed', 'compensated', 'irreversible',
     'compensation_failed', 'conflict', 'unknown'));
ALTER TABLE sequin.write_journal ADD COLUMN IF NOT EXISTS idempotency_key text;
-- The client backend whose statement journalled an intent: while the
-- proxy still applies that statement it holds the backend's grant, and
-- the intent is the statement's to settle; once the grant is gone (the
-- statement ended, or Sequin died), the reconciler may settle it.
ALTER TABLE sequin.write_journal ADD COLUMN IF NOT EXISTS backend integer;
DROP INDEX IF EXISTS sequin.write_journal_open;
CREATE INDEX IF NOT EXISTS write_journal_unsettled ON sequin.write_journal (created_at)
    WHERE state IN ('intent', 'applied');
DROP INDEX IF EXISTS sequin.write_journal_settled;
CREATE INDEX IF NOT EXISTS write_journal_resolved ON sequin.write_journal (resolved_at)
    WHERE state NOT IN ('intent', 'applied');

-- Whether this session holds the key of a running Sequin process (its own
-- sessions get it in their startup packet).
CREATE OR REPLACE FUNCTION sequin.holds_process_key() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
BEGIN
    RETURN k IS NOT NULL AND k <> '' AND EXISTS (
        SELECT 1 FROM sequin.writer_key
         WHERE digest = sha256(convert_to(k, 'UTF8')) AND expires_at > now());
END
$$;

-- Whether a backend of Sequin's role holds the grant of this session: the
-- advisory lock (GRANT_CLASS, pg_backend_pid()) in exclusive mode. A client
-- can take that lock itself, from any of its sessions, which is why the
-- holder's role is checked: Sequin's role is the owner of this function
-- (current_user inside it). The activity snapshot is per transaction; it
-- is read again when the holder is not in it (a Sequin session opened
-- since).
CREATE OR REPLACE FUNCTION sequin.granted() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    holder int;
    role oid;
BEGIN
    SELECT l.pid INTO holder FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.classid = 1397837383 AND l.objid = pg_backend_pid()
       AND l.objsubid = 2 AND l.mode = 'ExclusiveLock' AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.pid <> pg_backend_pid();
    IF holder IS NULL THEN
        RETURN false;
    END IF;
    SELECT a.usesysid INTO role FROM pg_stat_get_activity(holder) a;
    IF role IS NULL THEN
        PERFORM pg_stat_clear_snapshot();
        SELECT a.usesysid INTO role FROM pg_stat_get_activity(holder) a;
    END IF;
    RETURN role IS NOT NULL AND pg_has_role(role, current_user, 'MEMBER');
END
$$;

-- Refuses writes to a synced table unless the session holds a process key
-- (Sequin's own sessions: every operation) or a grant (a client's session
-- while the proxy applies its statement: not TRUNCATE, which fires no
-- capture).
CREATE OR REPLACE FUNCTION sequin.guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF sequin.holds_process_key() OR (TG_OP <> 'TRUNCATE' AND sequin.granted()) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = '42501',
        MESSAGE = format('%I.%I is synced by Sequin: %s it through the Sequin proxy, which applies the change to the API first',
                         TG_TABLE_SCHEMA, TG_TABLE_NAME, lower(TG_OP)),
        HINT = 'Connect to the Sequin proxy (proxy.listen in sequin.yaml) instead of the database directly; COPY, TRUNCATE, writes through views and writes from functions or DO blocks are refused.',
        SCHEMA = TG_TABLE_SCHEMA,
        TABLE = TG_TABLE_NAME;
END
$$;

-- Records the rows a granted statement changed (see sequin.capture).
-- Sequin's own sessions are not recorded.
CREATE OR REPLACE FUNCTION sequin.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF sequin.holds_process_key() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sequin.capture (xid, relid, op, new)
        SELECT txid_current(), TG_RELID, TG_OP, jsonb_agg(to_jsonb(n)) FROM sequin_new n HAVING count(*) > 0;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sequin.capture (xid, relid, op, old, new)
        SELECT txid_current(), TG_RELID, TG_OP, o.rows, n.rows
          FROM (SELECT jsonb_agg(to_jsonb(o)) AS rows, count(*) AS c FROM sequin_old o) o,
               (SELECT jsonb_agg(to_jsonb(n)) AS rows FROM sequin_new n) n
         WHERE o.c > 0;
    ELSE
        INSERT INTO sequin.capture (xid, relid, op, old)
        SELECT txid_current(), TG_RELID, TG_OP, jsonb_agg(to_jsonb(o)) FROM sequin_old o HAVING count(*) > 0;
    END IF;
    RETURN NULL;
END
$$;

-- The rows this transaction's granted statements changed after capture
-- row `after` (the proxy's high-water mark for the session), and whether
-- each is of table `target`. More than `cap` rows (the object's most rows
-- per statement) is an error (54000).
CREATE OR REPLACE FUNCTION sequin.captured(after bigint, target regclass, cap bigint)
RETURNS TABLE (id bigint, xid bigint, is_target boolean, op text, old jsonb, new jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mine bigint := txid_current_if_assigned();
    n bigint;
BEGIN
    SELECT sum(greatest(coalesce(jsonb_array_length(c.old), 0), coalesce(jsonb_array_length(c.new), 0)))
      INTO n FROM sequin.capture c WHERE c.xid = mine AND c.id > after;
    IF n > cap THEN
        RAISE EXCEPTION USING ERRCODE = '54000',
            MESSAGE = format('the statement changed %s rows, more than the %s one statement may write through', n, cap);
    END IF;
    RETURN QUERY SELECT c.id, c.xid, c.relid = target, c.op, c.old, c.new FROM sequin.capture c
     WHERE c.xid = mine AND c.id > after
     ORDER BY c.id;
END
$$;

-- Ends a write-through statement inside the client's transaction: checks
-- that what was captured after `after` is exactly the proxy's write-back
-- (`deleted` provisional rows, `upserted` rows written or rewritten, all of
-- table `target`), so that a RETURNING expression or anything else that
-- wrote synced rows meanwhile aborts the transaction; marks the effects of
-- the statements whose capture rows are `marks` (only while those rows
-- exist: see sequin.write_mark); returns the last capture id.
CREATE OR REPLACE FUNCTION sequin.release(after bigint, target oid, deleted bigint, upserted bigint, marks bigint[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mine bigint := txid_current_if_assigned();
    got_deleted bigint;
    got_upserted bigint;
    others bigint;
    last bigint;
BEGIN
    SELECT coalesce(sum(jsonb_array_length(c.old)) FILTER (WHERE c.op = 'DELETE' AND c.relid = target), 0),
           coalesce(sum(jsonb_array_length(c.new)) FILTER (WHERE c.op <> 'DELETE' AND c.relid = target), 0),
           count(*) FILTER (WHERE c.relid <> target),
           max(c.id)
      INTO got_deleted, got_upserted, others, last
      FROM sequin.capture c WHERE c.xid = mine AND c.id > after;
    IF got_deleted <> deleted OR got_upserted <> upserted OR others > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = '42501',
            MESSAGE = 'write-through: synced rows were changed while Sequin wrote back the API''s records (a RETURNING expression or a function it called?); the transaction is aborted and the API''s changes will be undone',
            HINT = 'RETURNING expressions must not write synced tables.';
    END IF;
    INSERT INTO sequin.write_mark (capture_id)
    SELECT c.id FROM sequin.capture c WHERE c.id = ANY(marks) AND c.xid = mine
    ON CONFLICT DO NOTHING;
    RETURN coalesce(last, after);
END
$$;

-- Sequin's functions are executed by its own role and by the triggers
-- (which need no EXECUTE right): PUBLIC may not call them or build its own
-- triggers on them. The few that clients' sessions call through the proxy
-- are granted back below.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA sequin FROM PUBLIC;
-- sequin.fail runs in clients' sessions: nothing in it resolves through
-- their search_path.
ALTER FUNCTION sequin.fail(text, text, text, text, text, text) SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION sequin.fail(text, text, text, text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION sequin.captured(bigint, regclass, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION sequin.release(bigint, oid, bigint, bigint, bigint[]) TO PUBLIC;

-- Whether a synced table has the guard and capture triggers of this
-- version (and not 0002's row-level capture).
CREATE OR REPLACE FUNCTION sequin.protected(t regclass) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM pg_catalog.pg_trigger
             WHERE tgrelid = t AND NOT tgisinternal
               AND tgname IN ('sequin_guard', 'sequin_capture_insert', 'sequin_capture_update', 'sequin_capture_delete')
               AND tgfoid IN ('sequin.guard()'::regprocedure, 'sequin.capture()'::regprocedure)) = 4
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = t AND tgname = 'sequin_capture')
$$;

-- Installs the guard and the capture triggers on one synced table, unless
-- they are there already (DDL takes locks that queue behind open
-- transactions: none is taken when there is nothing to do).
CREATE OR REPLACE FUNCTION sequin.protect(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF sequin.protected(t) THEN
        RETURN;
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture ON %s', t);
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_guard ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION sequin.guard()', t);
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture_insert ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_capture_insert AFTER INSERT ON %s
                    REFERENCING NEW TABLE AS sequin_new
                    FOR EACH STATEMENT EXECUTE FUNCTION sequin.capture()', t);
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture_update ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_capture_update AFTER UPDATE ON %s
                    REFERENCING OLD TABLE AS sequin_old NEW TABLE AS sequin_new
                    FOR EACH STATEMENT EXECUTE FUNCTION sequin.capture()', t);
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture_delete ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_capture_delete AFTER DELETE ON %s
                    REFERENCING OLD TABLE AS sequin_old
                    FOR EACH STATEMENT EXECUTE FUNCTION sequin.capture()', t);
END
$$;
REVOKE EXECUTE ON FUNCTION sequin.protect(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION sequin.protected(regclass) FROM PUBLIC;

-- Sequin's journal: the guard alone (the proxy refuses client writes to
-- the `sequin` schema, and the client's role has no rights on it anyway).
-- `sequin.capture` and `sequin.write_mark` are written through Sequin's
-- functions only, which decide what goes in.
DO $$
DECLARE
    t regclass;
BEGIN
    FOREACH t IN ARRAY ARRAY['sequin.write_journal'::regclass, 'sequin.write_marker'::regclass] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = t AND tgname = 'sequin_guard') THEN
            EXECUTE format('CREATE TRIGGER sequin_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
                            FOR EACH STATEMENT EXECUTE FUNCTION sequin.guard()', t);
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture ON %s', t);
    END LOOP;
END
$$;
