-- The `sequin` schema: Sequin's own state, beside the synced tables.
-- Applied by `sequin migrate`; every statement is idempotent.

CREATE SCHEMA IF NOT EXISTS sequin;

-- Connections seen by this database (name = the Postgres schema of its tables).
CREATE TABLE IF NOT EXISTS sequin.connection (
    name text PRIMARY KEY,
    connector text NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now()
);

-- Sync progress per connection and object. Cursors are committed in the same
-- transaction as the rows they cover, so a crash resumes without gaps.
CREATE TABLE IF NOT EXISTS sequin.sync_state (
    connection text NOT NULL REFERENCES sequin.connection (name) ON DELETE CASCADE,
    object text NOT NULL,
    phase text NOT NULL DEFAULT 'backfilling' CHECK (phase IN ('backfilling', 'live')),
    backfill_cursor jsonb,
    backfill_started_at timestamp with time zone,
    incremental_cursor jsonb,
    rows_synced bigint NOT NULL DEFAULT 0,
    last_poll_at timestamp with time zone,
    last_success_at timestamp with time zone,
    last_error text,
    last_error_at timestamp with time zone,
    PRIMARY KEY (connection, object)
);

-- OAuth2 tokens; a rotated refresh token replaces the configured one.
CREATE TABLE IF NOT EXISTS sequin.oauth_token (
    connection text PRIMARY KEY REFERENCES sequin.connection (name) ON DELETE CASCADE,
    refresh_token text NOT NULL,
    access_token text,
    expires_at timestamp with time zone,
    instance_url text,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);

-- Columns and tables added at run time (Airtable tables, custom fields).
CREATE TABLE IF NOT EXISTS sequin.discovered_column (
    connection text NOT NULL REFERENCES sequin.connection (name) ON DELETE CASCADE,
    object text NOT NULL,
    column_name text NOT NULL,
    api_name text NOT NULL,
    api_type text NOT NULL,
    column_type text NOT NULL,
    removed_at timestamp with time zone,
    PRIMARY KEY (connection, object, column_name)
);
