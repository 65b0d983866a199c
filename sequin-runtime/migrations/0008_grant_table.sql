-- Write-through grants, second form (issue #10). Migration 0006 (as it
-- landed) granted a client's statement while a session of Sequin's held an
-- advisory lock for the client's backend, which the guard found in
-- pg_locks on every firing (69-89 us each, taking every lock-manager
-- partition lock) and which cost Sequin two round trips per statement.
-- Here:
--
-- * The open grants are rows of one unlogged table, sequin.grant, keyed by
--   (transaction, backend pid); only Sequin's role can write it.
-- * sequin.open_grant(kid, at, mac) opens one, given a token: a MAC over
--   the client's backend pid and the time under a secret of the proxy
--   process (`writer_key.grant_key`) that only Sequin's role can read: good
--   for that backend, for a minute, and never shown to the client (the
--   proxy keeps its statements' parameters out of the errors it forwards).
-- * The guard and the capture check the process key inline (they run for
--   every statement that writes a synced table).
-- * The journal says which Sequin process applies an intent (`process`, its
--   advisory lock held in share mode while it runs) instead of which client
--   backend, and what the API holds after an applied write (`written`, for
--   undo only while it still holds it). The API's answers are appended to
--   sequin.write_outcome by the statement that sent them (an insert costs
--   the client's statement far less than an update of the journal) and
--   folded into the journal by the reconciler.
--
-- A migration that has landed never changes (a database runs each once):
-- this one replaces what 0006 defined.

ALTER TABLE sequin.writer_key ADD COLUMN IF NOT EXISTS grant_key bytea;
ALTER TABLE sequin.write_journal ADD COLUMN IF NOT EXISTS written jsonb;
ALTER TABLE sequin.write_journal ADD COLUMN IF NOT EXISTS process integer;
ALTER TABLE sequin.write_journal DROP COLUMN IF EXISTS backend;

CREATE TABLE IF NOT EXISTS sequin.write_outcome (
    id uuid PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('applied', 'rejected', 'unknown')),
    api_id text,
    written jsonb
);

-- Open grants: the transactions of client backends that may write synced
-- tables right now, each for the one statement the proxy is applying
-- (sequin.open_grant opens, sequin.release closes; a failure in between
-- aborts the transaction, and the row with it). Unlogged: a server crash
-- ends every transaction in it.
CREATE UNLOGGED TABLE IF NOT EXISTS sequin.grant (
    xid bigint NOT NULL,
    pid integer NOT NULL,
    PRIMARY KEY (xid, pid)
);

-- 0006's grant check, for the guard defined below (which no longer calls it).
DROP FUNCTION IF EXISTS sequin.granted();

-- Opens the grant of this session's current transaction, given a token of
-- a running proxy process (`kid`: the digest of its process key): `mac`
-- must be sha256(k || sha256(k || '<backend pid>:<at>')) under that
-- process's grant key k (readable by Sequin's role only), and `at` (the
-- proxy's clock, in milliseconds since the epoch) within a minute of the
-- server's.
CREATE OR REPLACE FUNCTION sequin.open_grant(kid bytea, at bigint, mac bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k bytea;
BEGIN
    SELECT w.grant_key INTO k FROM sequin.writer_key w
     WHERE w.digest = kid AND w.expires_at > now() AND w.grant_key IS NOT NULL;
    IF k IS NULL
       OR abs(extract(epoch FROM clock_timestamp()) * 1000 - at) > 60000
       OR mac IS DISTINCT FROM sha256(k || sha256(k || convert_to(pg_backend_pid()::text || ':' || at::text, 'UTF8'))) THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = 'sequin.open_grant: not a current token of a running Sequin proxy';
    END IF;
    INSERT INTO sequin.grant (xid, pid) VALUES (txid_current(), pg_backend_pid())
    ON CONFLICT DO NOTHING;
END
$$;

-- The guard of synced tables (migration 0006's triggers call it): a
-- session holding a process key, or a transaction whose grant is open.
CREATE OR REPLACE FUNCTION sequin.guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
BEGIN
    -- sequin.holds_process_key(), inlined: this runs for every statement
    -- that writes a synced table.
    IF k IS NOT NULL AND k <> '' AND EXISTS (
        SELECT 1 FROM sequin.writer_key
         WHERE digest = sha256(convert_to(k, 'UTF8')) AND expires_at > now()) THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'TRUNCATE' AND EXISTS (
        SELECT 1 FROM sequin.grant WHERE xid = txid_current() AND pid = pg_backend_pid()) THEN
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

-- Records the rows a granted statement changed (as in 0006), the process
-- key checked inline.
CREATE OR REPLACE FUNCTION sequin.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
BEGIN
    -- sequin.holds_process_key(), inlined (see sequin.guard).
    IF k IS NOT NULL AND k <> '' AND EXISTS (
        SELECT 1 FROM sequin.writer_key
         WHERE digest = sha256(convert_to(k, 'UTF8')) AND expires_at > now()) THEN
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

-- Ends a granted statement (see 0006): as there, and the grant's row goes.
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
    -- The statement is over: its grant closes.
    DELETE FROM sequin.grant WHERE xid = mine AND pid = pg_backend_pid();
    RETURN coalesce(last, after);
END
$$;

-- New functions are executable by PUBLIC unless revoked (0006 revoked
-- those it found): the one clients' sessions call through the proxy.
GRANT EXECUTE ON FUNCTION sequin.open_grant(bytea, bigint, bytea) TO PUBLIC;
REVOKE ALL ON sequin.grant, sequin.write_outcome FROM PUBLIC;
