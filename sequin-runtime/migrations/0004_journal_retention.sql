-- Settled journal entries are removed once older than the proxy's
-- `journal_retention`; this index finds them without reading the open ones
-- or the whole table. Idempotent like every migration.

CREATE INDEX IF NOT EXISTS write_journal_settled
    ON sequin.write_journal (resolved_at) WHERE state <> 'applied';
