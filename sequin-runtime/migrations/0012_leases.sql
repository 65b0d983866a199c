-- Work shared across processes (issue #16): every `sequin sync` / `sequin
-- run` process pointed at this database is a row of sequin.worker,
-- heartbeated; each connection is synced by the process holding its row of
-- sequin.lease. A lease is taken only when free or expired (`FOR UPDATE
-- SKIP LOCKED`), and each take increments its fencing token: a sync batch
-- commits only while its lease row still holds the token its connection
-- was started with (it locks the row `FOR SHARE` in the batch's
-- transaction), so a process that lost its lease cannot commit.

CREATE TABLE sequin.worker (
    id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE sequin.lease (
    connection text PRIMARY KEY,
    holder text,
    token bigint NOT NULL DEFAULT 0,
    taken_at timestamptz,
    expires_at timestamptz
);

-- Which process syncs each connection, for `sequin status` and dashboards.
CREATE VIEW sequin.lease_status AS
SELECT l.connection,
       CASE WHEN l.expires_at > now() THEN l.holder END AS holder,
       l.token,
       l.taken_at,
       l.expires_at,
       w.heartbeat_at
  FROM sequin.lease l
  LEFT JOIN sequin.worker w ON w.id = l.holder;

REVOKE ALL ON sequin.worker, sequin.lease FROM PUBLIC;
GRANT SELECT ON sequin.lease_status TO PUBLIC;
