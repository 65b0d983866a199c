-- Backfill progress: how many records an object's listing has, when the API
-- says so (Salesforce's `totalSize`), recorded as the backfill starts, so
-- `sequin status` can show `backfilling 42%`. NULL when the API gives no
-- count. Idempotent like every migration.

ALTER TABLE sequin.sync_state ADD COLUMN IF NOT EXISTS backfill_total bigint;
