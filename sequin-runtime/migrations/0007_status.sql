-- `sequin status` in SQL, so applications and dashboards can ask how fresh
-- the synced tables are:
--
--   SELECT * FROM sequin.status WHERE lag_seconds > 60 OR last_error IS NOT NULL;
--   SELECT * FROM sequin.write_status;
--
-- `sequin status` reads these views too (one definition). Applied once
-- (`sequin.schema_version`), under a short lock_timeout with retries.

-- How far a backfill is, in percent, from the rows in the table and the
-- count the API gave at its start (NULL without a count). It stays below
-- 100 until the phase is `live`: records created meanwhile can make the
-- table reach the API's count before the listing ends. A table that could
-- not be counted (NULL rows) is at 0.
CREATE OR REPLACE FUNCTION sequin.backfill_percent(counted bigint, total bigint) RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN total > 0
                THEN least(99, greatest(coalesce(counted, 0), 0) * 100 / total)::integer
           END
$$;

-- Rows in the table of a synced object, counted now; NULL for anything
-- that is not a synced object's table (pseudo-objects such as the events
-- feed, a table dropped by hand). SECURITY DEFINER: whoever reads the
-- status sees how many rows each synced table has, whatever their own
-- rights on it, and nothing else of it; only names recorded in
-- sequin.sync_state are counted, quoted with %I.
CREATE OR REPLACE FUNCTION sequin.object_rows(connection text, object text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.sync_state s
                    WHERE s.connection = object_rows.connection AND s.object = object_rows.object)
       OR to_regclass(format('%I.%I', connection, object)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM %I.%I', connection, object) INTO n;
    RETURN n;
END
$$;

-- Per connection and object: phase (`live`, `backfilling`), how far a
-- backfill is (when the API gave a count), rows in the table (for
-- pseudo-objects such as `_events`, the records merged), seconds since the
-- last poll (successful or not) and since the last success (the lag), and
-- the last error (NULL once a poll succeeds again). The `_connection` row
-- holds an error that stopped the whole connection.
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
       s.last_error_at
  FROM sequin.sync_state s
 CROSS JOIN LATERAL (SELECT sequin.object_rows(s.connection, s.object) AS rows) r;

-- Write-through's API effects per connection by journal state (`intent`
-- and `applied`: the transaction is still open; `committed`; `compensated`:
-- undone after a rollback; `irreversible`: a delete whose transaction
-- rolled back; `compensation_failed`, `conflict`, `unknown`: undoing failed
-- or the outcome is not known; `rejected`: the API refused), with the
-- latest error among them. Settled entries count until they are removed
-- (proxy.journal_retention).
CREATE OR REPLACE VIEW sequin.write_status AS
SELECT j.connection,
       j.state,
       count(*) AS entries,
       max(coalesce(j.resolved_at, j.created_at)) AS last_at,
       (array_agg(j.error ORDER BY coalesce(j.resolved_at, j.created_at) DESC)
          FILTER (WHERE j.error IS NOT NULL))[1] AS last_error
  FROM sequin.write_journal j
 GROUP BY j.connection, j.state;

-- Every role may read both views: they show how fresh each synced table is
-- and how write-through's effects ended, nothing secret. Errors are the
-- APIs' messages with credentials removed (Sequin never puts a credential
-- in an error), the tables' contents are not shown, and the views read
-- Sequin's tables with the owner's rights, which the reader does not get.
GRANT SELECT ON sequin.status, sequin.write_status TO PUBLIC;
GRANT EXECUTE ON FUNCTION sequin.backfill_percent(bigint, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION sequin.object_rows(text, text) TO PUBLIC;
