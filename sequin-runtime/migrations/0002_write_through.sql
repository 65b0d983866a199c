-- Write-through: the guard on synced tables, the row capture the proxy reads,
-- and the journal of API effects. Applied by `sequin migrate`; idempotent.

-- Digests of the keys of running Sequin processes. A session that holds a key
-- (in the `sequin.write_key` setting) may write synced tables: the sync
-- engine's own sessions, and the proxy while it applies a client's statement.
-- Keys are random per process and never leave it; only digests are stored.
CREATE TABLE IF NOT EXISTS sequin.writer_key (
    digest bytea PRIMARY KEY,
    holder text NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now()
);
-- A key lent to one statement opens its target table only (a function the
-- statement calls cannot use it on another synced table).
ALTER TABLE sequin.writer_key ADD COLUMN IF NOT EXISTS relid oid;

-- Every effect write-through had on an API, with what undoes it. `xid` is the
-- client's transaction: its outcome (txid_status) decides whether the effect
-- stays (`committed`) or is undone (`compensated`); deletes cannot be undone
-- (`irreversible`: the local row is removed instead, so Postgres matches the
-- API).
CREATE TABLE IF NOT EXISTS sequin.write_journal (
    id uuid PRIMARY KEY,
    connection text NOT NULL,
    object text NOT NULL,
    op text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    api_id text,
    xid bigint NOT NULL,
    state text NOT NULL DEFAULT 'applied'
        CHECK (state IN ('applied', 'committed', 'compensated', 'irreversible', 'compensation_failed', 'unknown')),
    -- The API's body of the write, and the body that restores the old values
    -- (updates) or the id to delete (creates).
    request jsonb,
    undo jsonb,
    error text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    resolved_at timestamp with time zone
);
CREATE INDEX IF NOT EXISTS write_journal_open ON sequin.write_journal (created_at) WHERE state = 'applied';

-- One row per journalled effect, inserted inside the client's (sub)transaction
-- with the write: after the transaction commits, a missing marker means the
-- write was rolled back to a savepoint. Removed once the entry is settled.
CREATE TABLE IF NOT EXISTS sequin.write_marker (
    id uuid PRIMARY KEY
);

-- Refuses writes to a synced table from sessions without a writer key: a
-- direct connection, COPY, a function, TRUNCATE. SECURITY DEFINER so that
-- application roles need no access to `sequin.writer_key`.
CREATE OR REPLACE FUNCTION sequin.guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
BEGIN
    -- A process key opens every table; a key lent to a statement opens its
    -- target only, and never for TRUNCATE (which fires no row trigger, so
    -- the statement's capture would not see it).
    IF k IS NULL OR k = '' OR NOT EXISTS (
        SELECT 1 FROM sequin.writer_key
         WHERE digest = sha256(convert_to(k, 'UTF8'))
           AND (holder <> 'statement' OR (relid = TG_RELID AND TG_OP <> 'TRUNCATE'))
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = '42501',
            MESSAGE = format('%I.%I is synced by Sequin: %s it through the Sequin proxy, which applies the change to the API first',
                             TG_TABLE_SCHEMA, TG_TABLE_NAME, lower(TG_OP)),
            HINT = 'Connect to the Sequin proxy (proxy.listen in sequin.yaml) instead of the database directly; COPY, TRUNCATE, writes through views and writes from functions are refused.',
            SCHEMA = TG_TABLE_SCHEMA,
            TABLE = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;

-- Appends each changed row (operation, old row, new row) to the
-- transaction-local setting `sequin.captured`, one JSON array per line, while
-- the proxy applies a statement (`sequin.capture` = on). Refuses more rows than
-- `sequin.capture_cap`, the object's per-statement limit.
CREATE OR REPLACE FUNCTION sequin.capture() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    n int := coalesce(nullif(current_setting('sequin.captured_n', true), ''), '0')::int + 1;
    cap int := coalesce(nullif(current_setting('sequin.capture_cap', true), ''), '0')::int;
BEGIN
    IF cap > 0 AND n > cap THEN
        RAISE EXCEPTION USING
            ERRCODE = '54000',
            MESSAGE = format('[%s]: this statement changes more than %s rows of %I.%I, the most one statement may write through to the API',
                             current_setting('sequin.capture_api', true), cap, TG_TABLE_SCHEMA, TG_TABLE_NAME),
            HINT = 'Split the statement (e.g. by a range of ids) into several smaller ones.',
            SCHEMA = TG_TABLE_SCHEMA,
            TABLE = TG_TABLE_NAME;
    END IF;
    PERFORM set_config('sequin.captured_n', n::text, true);
    PERFORM set_config('sequin.captured',
        current_setting('sequin.captured', true)
        || jsonb_build_array(
               TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
               CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
               CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END)::text
        || chr(10),
        true);
    RETURN NULL;
END
$$;

-- Raises a write-through error inside the client's transaction, so that the
-- transaction ends up aborted exactly as after any failed statement.
CREATE OR REPLACE FUNCTION sequin.fail(code text, message text, detail text,
                                       schema_name text, table_name text, column_name text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, DETAIL = coalesce(detail, ''),
        SCHEMA = coalesce(schema_name, ''), TABLE = coalesce(table_name, ''), COLUMN = coalesce(column_name, '');
END
$$;

-- The proxy works in the client's session, as the client's role, which
-- needs no rights on Sequin's tables: it lends a statement its key, and
-- marks effects (while the statement's key is in force), through these
-- functions, which ask for the key of a
-- running Sequin process (known to Sequin alone; only its digest is
-- stored) so that no client can call them to its own ends.
DROP FUNCTION IF EXISTS sequin.lend(text, bytea);
CREATE OR REPLACE FUNCTION sequin.lend(process_key text, statement_digest bytea, target regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.writer_key
                    WHERE digest = sha256(convert_to(process_key, 'UTF8')) AND holder <> 'statement') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sequin.lend: not a Sequin process key';
    END IF;
    INSERT INTO sequin.writer_key (digest, holder, relid) VALUES (statement_digest, 'statement', target);
END
$$;

CREATE OR REPLACE FUNCTION sequin.unlend(process_key text, statement_digest bytea) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.writer_key
                    WHERE digest = sha256(convert_to(process_key, 'UTF8')) AND holder <> 'statement') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sequin.unlend: not a Sequin process key';
    END IF;
    DELETE FROM sequin.writer_key WHERE digest = statement_digest AND holder = 'statement';
END
$$;

CREATE OR REPLACE FUNCTION sequin.mark(process_key text, ids uuid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    lent text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.writer_key
                    WHERE digest = sha256(convert_to(process_key, 'UTF8')) AND holder <> 'statement') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sequin.mark: not a Sequin process key';
    END IF;
    -- The statement's key opens its own table only: the marker is written
    -- under the process key, restored at once.
    lent := current_setting('sequin.write_key', true);
    PERFORM set_config('sequin.write_key', process_key, true);
    INSERT INTO sequin.write_marker (id) SELECT unnest(ids);
    PERFORM set_config('sequin.write_key', coalesce(lent, ''), true);
END
$$;

-- Clients may call Sequin's functions (each checks what it must); Sequin's
-- tables stay closed to them.
GRANT USAGE ON SCHEMA sequin TO PUBLIC;

-- Installs the guard and the capture triggers on one synced table.
CREATE OR REPLACE FUNCTION sequin.protect(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_guard ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION sequin.guard()', t);
    EXECUTE format('DROP TRIGGER IF EXISTS sequin_capture ON %s', t);
    EXECUTE format('CREATE TRIGGER sequin_capture AFTER INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW WHEN (current_setting(''sequin.capture'', true) = ''on'')
                    EXECUTE FUNCTION sequin.capture()', t);
END
$$;

-- The journal and its markers are Sequin's: guarded like synced tables.
SELECT sequin.protect('sequin.write_journal');
DROP TRIGGER IF EXISTS sequin_capture ON sequin.write_journal;
SELECT sequin.protect('sequin.write_marker');
DROP TRIGGER IF EXISTS sequin_capture ON sequin.write_marker;
