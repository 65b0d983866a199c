-- Less Postgres work per write-through statement (issue #17), continued:
-- statements planned once, not at every call.
--
-- Postgres plans a statement with parameters anew for each call (a custom
-- plan) while its generic plan is estimated dearer than the custom ones by
-- more than the planning costs. `c.id = ANY(marks)` is such a statement: a
-- custom plan knows the array has one element, the generic plan assumes
-- ten. sequin.release() marked the statement's effects with it, and
-- Postgres planned it at nearly every call (27 µs of its 85 µs; `bench
-- write --server-profile`, 5,179 plans in 7,265 calls). The marks are
-- inserted one by one now: a statement whose only parameter is one id, so
-- its generic plan is as cheap as any custom one and is kept. What release
-- decides is unchanged.
--
-- sequin.emit_write (events on) was planned at most calls too: its outbox
-- INSERT filters the statement's capture rows by `marks` and `after`, and
-- its plan took 372 µs to make, its execution 121 µs (`bench write
-- --events --server-profile`: 4,197 plans in 5,531 calls). Its statements
-- are planned once per session now: the generic plan finds the capture
-- rows by the transaction's index (capture_xid) and the journal entries by
-- their primary key whatever the arrays hold.

CREATE OR REPLACE FUNCTION sequin.release(after bigint, target oid, deleted bigint, upserted bigint, marks bigint[], requests jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    mine bigint := txid_current_if_assigned();
    got_deleted bigint;
    got_upserted bigint;
    others bigint;
    last bigint;
    m bigint;
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
    -- One capture row per statement: usually one mark.
    FOREACH m IN ARRAY coalesce(marks, '{}') LOOP
        INSERT INTO sequin.write_mark (capture_id)
        SELECT c.id FROM sequin.capture c WHERE c.id = m AND c.xid = mine
        ON CONFLICT DO NOTHING;
    END LOOP;
    IF EXISTS (SELECT 1 FROM sequin.event_settings WHERE emit) THEN
        PERFORM sequin.emit_write(mine, target, after, marks, requests);
    END IF;
    RETURN coalesce(last, after);
END
$$;

ALTER FUNCTION sequin.emit_write(bigint, oid, bigint, bigint[], jsonb) SET plan_cache_mode = force_generic_plan;
