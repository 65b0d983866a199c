-- Events (issue #15): every committed change to a synced table, once.
--
-- * `sequin.outbox`: written in the transaction of the change, one row per
--   changed record. For Sequin's own sessions (sync, the reconciler) the
--   capture trigger writes it from the statement's transition tables; for a
--   write-through statement `sequin.release()` writes the net effect of the
--   client's statement and its write-back together (one event per record,
--   the API's canonical row, `origin = 'write'`). A rolled-back transaction
--   (or savepoint) takes its rows with it; a no-op upsert writes none.
-- * `sequin.events`: the log. The sequencer (one at a time, under a
--   transaction advisory lock) moves committed outbox rows here in one
--   statement, numbering them with `seq` in outbox order. Sequencer
--   transactions are serialized and each is visible before the next takes
--   the lock, so a reader that has seen `seq` N never later sees a smaller
--   one: `WHERE seq > <cursor>` is a complete cursor. A record's changes are
--   serialized by its row lock, so its events are in `seq` order.
-- * `sequin.sink`, `sequin.sink_parked`: each sink's cursor, and the events
--   it holds back (retrying, blocked behind an earlier event of the same
--   record, or dead-lettered).
--
-- Nothing here is readable by PUBLIC: an event carries the whole row, and
-- a role's grants and row-level security on the synced tables do not apply
-- to it. A consumer of `sequin.events` is granted SELECT by name.

-- Whether changes become events (`sequin` writes this at start from
-- sequin.yaml: `events:` or any `sinks:`), and whether a backfill's rows do
-- (as `read` events; a sink with `backfill: true`).
CREATE TABLE IF NOT EXISTS sequin.event_settings (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    emit boolean NOT NULL DEFAULT false,
    backfill boolean NOT NULL DEFAULT false
);
INSERT INTO sequin.event_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

-- No index: rows are appended by writers and taken whole by the sequencer.
-- `id` orders a record's changes (they are serialized by its row lock).
CREATE TABLE IF NOT EXISTS sequin.outbox (
    id bigserial,
    xid bigint NOT NULL DEFAULT txid_current(),
    connection text NOT NULL,
    "table" text NOT NULL,
    key jsonb NOT NULL,
    op text NOT NULL,
    changes jsonb,
    record jsonb,
    old jsonb,
    origin text NOT NULL,
    request_ids text[]
);

CREATE SEQUENCE IF NOT EXISTS sequin.event_seq;

CREATE TABLE IF NOT EXISTS sequin.events (
    seq bigint PRIMARY KEY,
    xid bigint NOT NULL,
    connection text NOT NULL,
    "table" text NOT NULL,
    key jsonb NOT NULL,
    op text NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'read')),
    changes jsonb,
    record jsonb,
    old jsonb,
    origin text NOT NULL,
    request_ids text[],
    committed_at timestamptz NOT NULL
);
-- Retention and replays by time: committed_at grows with seq.
CREATE INDEX IF NOT EXISTS events_committed_at ON sequin.events USING brin (committed_at);

CREATE TABLE IF NOT EXISTS sequin.sink (
    name text PRIMARY KEY,
    kind text NOT NULL,
    -- Every event up to here was delivered, filtered out or parked.
    cursor bigint NOT NULL,
    delivered bigint NOT NULL DEFAULT 0,
    -- Paused after consecutive failures: new events wait; a retry (or a
    -- probe) that goes through resumes it.
    paused_since timestamptz,
    failing_since timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error text,
    last_delivered_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sequin.sink_parked (
    sink text NOT NULL REFERENCES sequin.sink (name) ON DELETE CASCADE,
    seq bigint NOT NULL,
    record_key text NOT NULL,
    -- retry: the first undelivered event of its record, sent again at
    -- next_at; blocked: behind an earlier event of its record; dead: out of
    -- attempts (its record's later events stay blocked until it is retried
    -- or discarded).
    state text NOT NULL CHECK (state IN ('retry', 'blocked', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_at timestamptz,
    last_error text,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, seq)
);
CREATE INDEX IF NOT EXISTS sink_parked_record ON sequin.sink_parked (sink, record_key, seq);

-- Write-through's events name the journal entries of their API requests.
CREATE INDEX IF NOT EXISTS write_journal_capture ON sequin.write_journal (capture_id);

-- Records deleted lately, with the update marker of their last version:
-- sync does not bring back a deleted record from an older version it read
-- before the delete (an events feed page, a list page in flight). Kept an
-- hour (sync prunes them); unlogged: a server crash loses them, and with
-- them only this protection of the seconds around it.
CREATE UNLOGGED TABLE IF NOT EXISTS sequin.tombstone (
    relid oid NOT NULL,
    key text NOT NULL,
    updated_at timestamptz,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relid, key)
);

-- The primary key column of a synced table (one column: the API's id).
CREATE OR REPLACE FUNCTION sequin.primary_key(t oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.attname::text
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = t AND i.indisprimary
$$;

-- The columns whose values differ between two versions of a row, as
-- {"<column>": {"old": .., "new": ..}}; NULL when only Sequin's own
-- columns (or nothing) changed.
CREATE OR REPLACE FUNCTION sequin.event_changes(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_object_agg(n.key, jsonb_build_object('old', old -> n.key, 'new', n.value))
      FROM jsonb_each(new) AS n
     WHERE n.key NOT IN ('_sequin_synced_at', '_sequin_updated_at')
       AND (old -> n.key) IS DISTINCT FROM n.value
$$;

-- Tombstones of deleted rows (a JSON array of them), see sequin.tombstone.
CREATE OR REPLACE FUNCTION sequin.bury(t oid, rows jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk text := sequin.primary_key(t);
BEGIN
    INSERT INTO sequin.tombstone (relid, key, updated_at)
    SELECT t, x.r ->> pk, (x.r ->> '_sequin_updated_at')::timestamptz
      FROM jsonb_array_elements(coalesce(rows, '[]')) AS x(r)
    ON CONFLICT (relid, key) DO UPDATE SET updated_at = EXCLUDED.updated_at, deleted_at = now();
END
$$;

-- The capture trigger of 0008, which also writes the events of statements
-- of Sequin's own sessions (their origin from `sequin.origin`: `sync`,
-- `backfill` or `reconcile`, trusted because only a session holding the
-- process key gets here; a client's session never does). A backfill's
-- inserted rows are events (`read`) only when asked for.
CREATE OR REPLACE FUNCTION sequin.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
    s sequin.event_settings;
    origin text;
    pk text;
BEGIN
    IF k IS NOT NULL AND k <> '' AND EXISTS (
        SELECT 1 FROM sequin.writer_key
         WHERE digest = sha256(convert_to(k, 'UTF8')) AND expires_at > now()) THEN
        IF TG_OP = 'DELETE' THEN
            PERFORM sequin.bury(TG_RELID, (SELECT jsonb_agg(to_jsonb(o)) FROM sequin_old o));
        END IF;
        SELECT * INTO s FROM sequin.event_settings;
        IF s IS NULL OR NOT s.emit THEN
            RETURN NULL;
        END IF;
        origin := coalesce(nullif(current_setting('sequin.origin', true), ''), 'sync');
        IF TG_OP = 'INSERT' AND origin = 'backfill' AND NOT s.backfill THEN
            RETURN NULL;
        END IF;
        pk := sequin.primary_key(TG_RELID);
        -- Each row's to_jsonb is computed once (`OFFSET 0` keeps the
        -- planner from pulling it up into every expression that uses it),
        -- and an update's changed columns are worked out inline rather
        -- than by a call of sequin.event_changes per row: together they
        -- made an update's events about twice as cheap
        -- (BENCHMARKS.md, Events).
        IF TG_OP = 'INSERT' THEN
            INSERT INTO sequin.outbox (connection, "table", key, op, record, origin)
            SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, jsonb_build_object(pk, x.r -> pk),
                   CASE WHEN origin = 'backfill' THEN 'read' ELSE 'insert' END, x.r, origin
              FROM (SELECT to_jsonb(n) AS r FROM sequin_new n OFFSET 0) x;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO sequin.outbox (connection, "table", key, op, changes, record, origin)
            SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, jsonb_build_object(pk, n.k), 'update', d.c, n.r, origin
              FROM (SELECT x.r -> pk AS k, x.r FROM (SELECT to_jsonb(o) AS r FROM sequin_old o OFFSET 0) x) o
              JOIN (SELECT x.r -> pk AS k, x.r FROM (SELECT to_jsonb(n) AS r FROM sequin_new n OFFSET 0) x) n
                ON n.k = o.k
             CROSS JOIN LATERAL (
                -- sequin.event_changes(o.r, n.r), inlined.
                SELECT jsonb_object_agg(e.key, jsonb_build_object('old', o.r -> e.key, 'new', e.value)) AS c
                  FROM jsonb_each(n.r) AS e
                 WHERE e.key NOT IN ('_sequin_synced_at', '_sequin_updated_at')
                   AND (o.r -> e.key) IS DISTINCT FROM e.value) d
             WHERE d.c IS NOT NULL;
        ELSE
            INSERT INTO sequin.outbox (connection, "table", key, op, old, origin)
            SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, jsonb_build_object(pk, x.r -> pk), 'delete', x.r, origin
              FROM (SELECT to_jsonb(o) AS r FROM sequin_old o OFFSET 0) x;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM sequin.bury(TG_RELID, (SELECT jsonb_agg(to_jsonb(o)) FROM sequin_old o));
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

-- The events of one write-through statement: the net effect, per record,
-- of the client's statement (capture rows `marks`) and its write-back
-- (capture rows after `after`), all in this transaction. A record's first
-- appearance says whether it existed before (an old row) and its last
-- whether it exists after (a new row): a created record's provisional row
-- (inserted, then replaced) nets to nothing, its canonical row to an
-- insert (an update when sync wrote it first); an update nets to the old
-- row against the API's canonical one.
CREATE OR REPLACE FUNCTION sequin.emit_write(mine bigint, target oid, after bigint, marks bigint[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk text := sequin.primary_key(target);
    conn text;
    tbl text;
BEGIN
    SELECT n.nspname, c.relname INTO conn, tbl
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = target;
    INSERT INTO sequin.outbox (connection, "table", key, op, changes, record, old, origin, request_ids)
    SELECT conn, tbl, jsonb_build_object(pk, f.k), v.op,
           CASE WHEN v.op = 'update' THEN v.changes END,
           CASE WHEN v.op <> 'delete' THEN f.last_row END,
           CASE WHEN v.op = 'delete' THEN f.first_row END,
           'write',
           ARRAY(SELECT j.id::text
                   FROM sequin.write_journal j
                   LEFT JOIN sequin.write_outcome o ON o.id = j.id
                  WHERE j.capture_id = ANY(marks)
                    AND coalesce(o.api_id, j.api_id) = f.k #>> '{}'
                  ORDER BY j.created_at)
      FROM (SELECT e.r -> pk AS k,
                   (array_agg(e.side ORDER BY e.id, e.side DESC))[1] AS first_side,
                   (array_agg(e.r ORDER BY e.id, e.side DESC))[1] AS first_row,
                   (array_agg(e.side ORDER BY e.id DESC, e.side))[1] AS last_side,
                   (array_agg(e.r ORDER BY e.id DESC, e.side))[1] AS last_row
              FROM (SELECT c.id, 'old' AS side, x.r
                      FROM sequin.capture c CROSS JOIN LATERAL jsonb_array_elements(c.old) AS x(r)
                     WHERE c.xid = mine AND c.relid = target AND (c.id = ANY(marks) OR c.id > after)
                    UNION ALL
                    SELECT c.id, 'new', x.r
                      FROM sequin.capture c CROSS JOIN LATERAL jsonb_array_elements(c.new) AS x(r)
                     WHERE c.xid = mine AND c.relid = target AND (c.id = ANY(marks) OR c.id > after)) e
             GROUP BY e.r -> pk) f
     CROSS JOIN LATERAL (
        SELECT CASE WHEN f.first_side = 'old' AND f.last_side = 'new' THEN 'update'
                    WHEN f.first_side = 'new' AND f.last_side = 'new' THEN 'insert'
                    WHEN f.first_side = 'old' AND f.last_side = 'old' THEN 'delete' END AS op,
               sequin.event_changes(f.first_row, f.last_row) AS changes) v
     WHERE v.op IS NOT NULL AND (v.op <> 'update' OR v.changes IS NOT NULL);
END
$$;

-- sequin.release of 0008, which also writes the statement's events.
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
    IF EXISTS (SELECT 1 FROM sequin.event_settings WHERE emit) THEN
        PERFORM sequin.emit_write(mine, target, after, marks);
    END IF;
    -- The statement is over: its grant closes.
    DELETE FROM sequin.grant WHERE xid = mine AND pid = pg_backend_pid();
    RETURN coalesce(last, after);
END
$$;

-- Moves the committed outbox rows into sequin.events (see the top);
-- returns how many. Run by one sequencer at a time.
CREATE OR REPLACE FUNCTION sequin.sequence_events() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    moved bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('sequin.sequence_events'));
    WITH m AS (DELETE FROM sequin.outbox RETURNING *)
    INSERT INTO sequin.events (seq, xid, connection, "table", key, op, changes, record, old, origin, request_ids, committed_at)
    SELECT nextval('sequin.event_seq'), s.xid, s.connection, s."table", s.key, s.op, s.changes, s.record,
           s.old, s.origin, s.request_ids, clock_timestamp()
      FROM (SELECT * FROM m ORDER BY m.id) s;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- A record's next event becomes due once nothing earlier of it is held:
-- the lowest parked event of each record, when blocked, is retried now.
CREATE OR REPLACE FUNCTION sequin.promote_parked(sink_name text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE sequin.sink_parked p SET state = 'retry', next_at = now(), attempts = 0
     WHERE p.sink = sink_name AND p.state = 'blocked'
       AND NOT EXISTS (SELECT 1 FROM sequin.sink_parked q
                        WHERE q.sink = p.sink AND q.record_key = p.record_key AND q.seq < p.seq);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Operations (also `sequin events retry|discard|replay`). Each returns how
-- many events it touched; an unknown sink is an error naming the fix.
CREATE OR REPLACE FUNCTION sequin.known_sink(sink_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.sink WHERE name = sink_name) THEN
        RAISE EXCEPTION USING ERRCODE = '42704',
            MESSAGE = format('no sink named %L', sink_name),
            HINT = 'Sinks are the names under `sinks:` in sequin.yaml of a running sequin; SELECT sink FROM sequin.sink_status lists them.';
    END IF;
END
$$;

-- Dead-lettered events (of one sink; one event when `one_seq` is given) are
-- sent again as if new, and a paused sink resumes.
CREATE OR REPLACE FUNCTION sequin.retry_dead(sink_name text, one_seq bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM sequin.known_sink(sink_name);
    UPDATE sequin.sink_parked SET state = 'retry', attempts = 0, next_at = now(), last_error = NULL
     WHERE sink = sink_name AND state = 'dead' AND (one_seq IS NULL OR seq = one_seq);
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE sequin.sink SET paused_since = NULL, consecutive_failures = 0, updated_at = now()
     WHERE name = sink_name;
    RETURN n;
END
$$;

-- Dead-lettered events are dropped (their records' later events go on).
CREATE OR REPLACE FUNCTION sequin.discard_dead(sink_name text, one_seq bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM sequin.known_sink(sink_name);
    DELETE FROM sequin.sink_parked WHERE sink = sink_name AND state = 'dead' AND (one_seq IS NULL OR seq = one_seq);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM sequin.promote_parked(sink_name);
    RETURN n;
END
$$;

-- Events the sink has passed (delivered or filtered out) are delivered
-- to it again, in order per record: those committed in [since, until),
-- of one connection and table when given. The sink's filter still
-- applies; the receiver sees the same ids again.
CREATE OR REPLACE FUNCTION sequin.replay_events(sink_name text, since timestamptz DEFAULT '-infinity',
                                                until timestamptz DEFAULT 'infinity',
                                                only_connection text DEFAULT NULL, only_table text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM sequin.known_sink(sink_name);
    INSERT INTO sequin.sink_parked (sink, seq, record_key, state)
    SELECT sink_name, e.seq, e.connection || '.' || e."table" || ':' || e.key::text, 'blocked'
      FROM sequin.events e
     WHERE e.seq <= (SELECT k.cursor FROM sequin.sink k WHERE k.name = sink_name)
       AND e.committed_at >= since AND e.committed_at < until
       AND (only_connection IS NULL OR e.connection = only_connection)
       AND (only_table IS NULL OR e."table" = only_table)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM sequin.promote_parked(sink_name);
    RETURN n;
END
$$;

-- Each sink: where it is, what it holds back, and its lag (the age of the
-- oldest event it has not delivered).
CREATE OR REPLACE VIEW sequin.sink_status AS
SELECT k.name AS sink,
       k.kind,
       CASE WHEN k.paused_since IS NOT NULL THEN 'paused'
            WHEN k.consecutive_failures > 0 THEN 'failing'
            ELSE 'delivering' END AS state,
       k.cursor,
       k.delivered,
       coalesce(p.retrying, 0) AS retrying,
       coalesce(p.blocked, 0) AS blocked,
       coalesce(p.dead, 0) AS dead,
       coalesce(extract(epoch FROM now() - least(p.oldest, e.oldest))::float8, 0) AS lag_seconds,
       k.paused_since,
       k.last_error,
       k.last_delivered_at
  FROM sequin.sink k
  LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE pp.state = 'retry') AS retrying,
                            count(*) FILTER (WHERE pp.state = 'blocked') AS blocked,
                            count(*) FILTER (WHERE pp.state = 'dead') AS dead,
                            min(ev.committed_at) FILTER (WHERE pp.state <> 'dead') AS oldest
                       FROM sequin.sink_parked pp
                       LEFT JOIN sequin.events ev ON ev.seq = pp.seq
                      WHERE pp.sink = k.name) p ON true
  LEFT JOIN LATERAL (SELECT ev.committed_at AS oldest FROM sequin.events ev
                      WHERE ev.seq > k.cursor ORDER BY ev.seq LIMIT 1) e ON true;

-- sequin.status of 0010 with a row per event sink: connection `sequin`
-- (never a connection's name), object `sink:<name>`, phase its state
-- (delivering, failing, paused), rows the events it holds back, lag_seconds
-- the age of the oldest event it has not delivered.
CREATE OR REPLACE VIEW sequin.status AS
SELECT s.connection,
       s.object,
       s.phase,
       CASE WHEN s.phase = 'backfilling'
            THEN sequin.backfill_percent(r.rows, s.backfill_total) END AS backfill_percent,
       coalesce(r.rows, CASE WHEN s.object LIKE '\_%' THEN s.rows_synced END) AS rows,
       extract(epoch FROM now() - s.last_poll_at)::float8 AS seconds_since_poll,
       extract(epoch FROM now() - s.last_success_at)::float8 AS lag_seconds,
       s.last_error,
       s.last_error_at,
       CASE WHEN s.phase = 'backfilling' AND q.paused LIKE 'backfill%'
            THEN 'backfill paused: ' || q.reason
            WHEN s.phase = 'live' AND q.paused LIKE '%poll'
            THEN 'polls paused: ' || q.reason END AS paused
  FROM sequin.sync_state s
 CROSS JOIN LATERAL (SELECT sequin.object_rows(s.connection, s.object) AS rows) r
  LEFT JOIN LATERAL (SELECT max(qq.paused) AS paused, max(qq.reason) AS reason
                       FROM sequin.quota qq
                      WHERE qq.connection = s.connection) q ON true
UNION ALL
SELECT 'sequin'::text,
       'sink:' || k.sink,
       k.state,
       NULL::integer,
       (k.retrying + k.blocked + k.dead)::bigint,
       NULL::float8,
       k.lag_seconds,
       k.last_error,
       NULL::timestamptz,
       CASE WHEN k.state = 'paused' THEN 'delivery paused: ' || coalesce(k.last_error, 'failed attempts') END
  FROM sequin.sink_status k;

REVOKE ALL ON sequin.tombstone, sequin.event_settings, sequin.outbox, sequin.events, sequin.sink, sequin.sink_parked FROM PUBLIC;
REVOKE ALL ON SEQUENCE sequin.event_seq, sequin.outbox_id_seq FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION sequin.emit_write(bigint, oid, bigint, bigint[]), sequin.bury(oid, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION sequin.sequence_events(), sequin.promote_parked(text), sequin.known_sink(text),
    sequin.retry_dead(text, bigint), sequin.discard_dead(text, bigint),
    sequin.replay_events(text, timestamptz, timestamptz, text, text) FROM PUBLIC;
-- Like the other status views: names, counts and times, no row data.
GRANT SELECT ON sequin.sink_status TO PUBLIC;
