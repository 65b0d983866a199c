-- Less Postgres work per write-through statement (issue #17).
--
-- 1. sequin.primary_key and sequin.event_changes become plpgsql. As SQL
--    functions with a SET clause they cannot be inlined, and Postgres
--    parsed and planned their bodies again on every call (about 60 µs for
--    primary_key, called by every DELETE's tombstones); plpgsql keeps the
--    plan for the session.
-- 2. sequin.bury writes no tombstone for a provisional row (`_pending_...`,
--    deleted by the write-back of a create): the API never had that id, so
--    sync has nothing to bring back.
--    The capture trigger returns at once when a statement changed no rows
--    (the UPDATE triggers of an INSERT .. ON CONFLICT DO UPDATE that
--    inserted), and turns a DELETE's rows into JSON once, not twice.
-- 3. sequin.release takes the journal entries of each record from Sequin
--    (`requests`: {"<record id>": ["<entry id>", ...]}), so the outcome of a
--    create need not be committed before the write-back: both go in
--    parallel, one round trip less for every INSERT. It only accepts
--    entries of this transaction's statement (marks), and only while the
--    statement's grant is open: a client calling it from a RETURNING
--    expression closes the grant, and Sequin's own call then aborts the
--    transaction.

CREATE OR REPLACE FUNCTION sequin.primary_key(t oid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT a.attname::text
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = t AND i.indisprimary);
END
$$;

CREATE OR REPLACE FUNCTION sequin.event_changes(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT jsonb_object_agg(n.key, jsonb_build_object('old', old -> n.key, 'new', n.value))
              FROM jsonb_each(new) AS n
             WHERE n.key NOT IN ('_sequin_synced_at', '_sequin_updated_at')
               AND (old -> n.key) IS DISTINCT FROM n.value);
END
$$;

-- Tombstones of deleted rows but provisional ones (see sequin.tombstone).
CREATE OR REPLACE FUNCTION sequin.bury(t oid, rows jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pk text := sequin.primary_key(t);
BEGIN
    INSERT INTO sequin.tombstone (relid, key, updated_at)
    SELECT t, x.r ->> pk, (x.r ->> '_sequin_updated_at')::timestamptz
      FROM jsonb_array_elements(coalesce(rows, '[]')) AS x(r)
     WHERE NOT starts_with(x.r ->> pk, '_pending_')
    ON CONFLICT (relid, key) DO UPDATE SET updated_at = EXCLUDED.updated_at, deleted_at = now();
END
$$;

-- The capture trigger of 0011; for a client's statement and Sequin's
-- write-back, a DELETE's old rows become JSON once (for the tombstones and
-- the capture), provisional rows are not buried, and a firing without
-- rows records nothing at once.
CREATE OR REPLACE FUNCTION sequin.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text := current_setting('sequin.write_key', true);
    s sequin.event_settings;
    origin text;
    pk text;
    gone jsonb;
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
    -- A client's statement under its grant, or Sequin's write-back.
    -- Statement triggers fire for no rows too (an INSERT .. ON CONFLICT DO
    -- UPDATE fires the UPDATE ones): nothing to record then.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sequin.capture (xid, relid, op, new)
        SELECT txid_current(), TG_RELID, TG_OP, jsonb_agg(to_jsonb(n)) FROM sequin_new n HAVING count(*) > 0;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (SELECT 1 FROM sequin_old) THEN
            RETURN NULL;
        END IF;
        INSERT INTO sequin.capture (xid, relid, op, old, new)
        SELECT txid_current(), TG_RELID, TG_OP, o.rows, n.rows
          FROM (SELECT jsonb_agg(to_jsonb(o)) AS rows FROM sequin_old o) o,
               (SELECT jsonb_agg(to_jsonb(n)) AS rows FROM sequin_new n) n;
    ELSE
        -- The old rows as JSON once, for the tombstones and the capture.
        gone := (SELECT jsonb_agg(to_jsonb(o)) FROM sequin_old o);
        IF gone IS NULL THEN
            RETURN NULL;
        END IF;
        -- A write-back's provisional rows leave no tombstones (bury skips
        -- them); every synced table's key is `id`, so they are told apart
        -- here without looking the key up, and bury is not called at all.
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(gone) AS x(r)
                    WHERE NOT starts_with(coalesce(x.r ->> 'id', ''), '_pending_')) THEN
            PERFORM sequin.bury(TG_RELID, gone);
        END IF;
        INSERT INTO sequin.capture (xid, relid, op, old) VALUES (txid_current(), TG_RELID, TG_OP, gone);
    END IF;
    RETURN NULL;
END
$$;

-- sequin.emit_write of 0011, with each record's journal entries given.
CREATE OR REPLACE FUNCTION sequin.emit_write(mine bigint, target oid, after bigint, marks bigint[], requests jsonb)
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
           ARRAY(SELECT r.id
                   FROM jsonb_array_elements_text(requests -> (f.k #>> '{}')) WITH ORDINALITY AS r(id, n)
                  WHERE EXISTS (SELECT 1 FROM sequin.write_journal j
                                 WHERE j.id = r.id::uuid AND j.xid = mine AND j.capture_id = ANY(marks))
                  ORDER BY r.n)
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

-- sequin.release of 0011, with each record's journal entries given, and
-- only while the statement's grant is open (see the top).
CREATE OR REPLACE FUNCTION sequin.release(after bigint, target oid, deleted bigint, upserted bigint, marks bigint[], requests jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mine bigint := txid_current_if_assigned();
    got_deleted bigint;
    got_upserted bigint;
    others bigint;
    last bigint;
BEGIN
    -- The statement is over: its grant closes (and was open).
    DELETE FROM sequin.grant WHERE xid = mine AND pid = pg_backend_pid();
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = '42501',
            MESSAGE = 'write-through: sequin.release() was called outside the statement Sequin is writing through (from a RETURNING expression?); the transaction is aborted and the API''s changes will be undone',
            HINT = 'RETURNING expressions must not call Sequin''s functions.';
    END IF;
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
        PERFORM sequin.emit_write(mine, target, after, marks, requests);
    END IF;
    RETURN coalesce(last, after);
END
$$;

-- The release of 0011, for a proxy of an earlier version still running:
-- the same checks, the records' entries read from the journal as before.
CREATE OR REPLACE FUNCTION sequin.release(after bigint, target oid, deleted bigint, upserted bigint, marks bigint[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN sequin.release(after, target, deleted, upserted, marks, (
        SELECT coalesce(jsonb_object_agg(x.k, x.ids), '{}')
          FROM (SELECT coalesce(o.api_id, j.api_id) AS k, jsonb_agg(j.id::text ORDER BY j.created_at) AS ids
                  FROM sequin.write_journal j
                  LEFT JOIN sequin.write_outcome o ON o.id = j.id
                 WHERE j.capture_id = ANY(marks) AND coalesce(o.api_id, j.api_id) IS NOT NULL
                 GROUP BY 1) x));
END
$$;

REVOKE EXECUTE ON FUNCTION sequin.emit_write(bigint, oid, bigint, bigint[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sequin.release(bigint, oid, bigint, bigint, bigint[], jsonb) TO PUBLIC;
