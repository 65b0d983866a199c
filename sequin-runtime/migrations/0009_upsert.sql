-- Upserts by an external id (issue #14): an INSERT ... ON CONFLICT written
-- through as the API's upsert is journalled as an `upsert` intent; whether
-- it created or updated a record is known only from the API's answer, so
-- the answer (sequin.write_outcome) may say what the entry became
-- (`create` or `update`) with the undo that goes with it, and the
-- reconciler folds both into the journal.
--
-- A migration that has landed never changes (a database runs each once).

ALTER TABLE sequin.write_journal DROP CONSTRAINT IF EXISTS write_journal_op_check;
ALTER TABLE sequin.write_journal ADD CONSTRAINT write_journal_op_check
    CHECK (op IN ('create', 'update', 'delete', 'upsert'));
ALTER TABLE sequin.write_outcome ADD COLUMN IF NOT EXISTS op text;
ALTER TABLE sequin.write_outcome ADD COLUMN IF NOT EXISTS undo jsonb;
