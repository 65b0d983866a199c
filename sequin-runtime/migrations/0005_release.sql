-- One call ends a write-through statement inside the client's transaction:
-- the markers of its API effects (see sequin.mark) and the removal of the
-- statement's lent key (see sequin.unlend), with one check of the process
-- key instead of two. Idempotent like every migration. sequin.mark and
-- sequin.unlend (0002) stay for sequin processes of earlier versions that
-- may still serve the database during an upgrade.

CREATE OR REPLACE FUNCTION sequin.release(process_key text, statement_digest bytea, ids uuid[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sequin.writer_key
                    WHERE digest = sha256(convert_to(process_key, 'UTF8')) AND holder <> 'statement') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'sequin.release: not a Sequin process key';
    END IF;
    IF cardinality(ids) > 0 THEN
        -- The statement's key opens its own table only: the markers are
        -- written under the process key.
        PERFORM set_config('sequin.write_key', process_key, true);
        INSERT INTO sequin.write_marker (id) SELECT unnest(ids);
    END IF;
    DELETE FROM sequin.writer_key WHERE digest = statement_digest AND holder = 'statement';
    PERFORM set_config('sequin.write_key', '', true);
END
$$;
