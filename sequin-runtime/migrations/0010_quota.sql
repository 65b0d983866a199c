-- The API quotas of connections whose connector reads one (the spec's
-- `quota:`, Salesforce's DailyApiRequests from /limits): what is left, the
-- connection's floors, and which reads sync has paused because of it.
--
--   SELECT * FROM sequin.quota_status;
--   SELECT connection, object, paused FROM sequin.status WHERE paused IS NOT NULL;
--
-- Written by the sync engine a few seconds after each change (the level
-- read from the API less the requests sent since), so `sequin status`,
-- dashboards and applications see it. Applied once (`sequin.schema_version`),
-- under a short lock_timeout with retries.

CREATE TABLE IF NOT EXISTS sequin.quota (
    connection text NOT NULL,
    quota text NOT NULL,
    max bigint,
    remaining bigint,
    -- Polls pause at `floor`, backfills at `backfill_floor` (NULL for a
    -- counter that is shown only).
    floor bigint,
    backfill_floor bigint,
    -- `backfill`, `backfill, poll` or NULL: the connection's reads paused
    -- because of its quota (the same on each of its counters), and why.
    paused text,
    reason text,
    read_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, quota)
);

CREATE OR REPLACE VIEW sequin.quota_status AS
SELECT q.connection, q.quota, q.max, q.remaining, q.floor, q.backfill_floor,
       q.paused, q.reason, q.read_at, q.updated_at
  FROM sequin.quota q;

-- sequin.status of 0007 with one column more: `paused`, what holds the
-- object's sync back when the connection's quota pauses its kind of read
-- (a backfilling object's backfill, a live object's polls), and why.
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
                      WHERE qq.connection = s.connection) q ON true;

-- Readable by every role, like sequin.status: levels of an API quota and
-- the connection's floors, nothing secret.
GRANT SELECT ON sequin.quota_status, sequin.status TO PUBLIC;
