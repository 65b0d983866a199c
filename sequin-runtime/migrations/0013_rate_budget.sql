-- One rate-limit budget per API account across every process (issue #16).
-- Each process (`sequin sync`, `sequin proxy`, `sequin run`) holds a lease
-- of some of an account's request slots: a row of sequin.rate_lease, taken
-- and renewed in chunks by one call of sequin.rate_take per process for all
-- its accounts, never per request. Its requests in any window stay within
-- the slots it holds, and the slots held by all processes together stay
-- within the API's limit, so the account's rate does too:
--
--   sum(total) over an account's live leases <= the limit's requests
--   sum(reads) over them                     <= its read share
--
-- so writes always find the write reserve. A process gives slots back only
-- once they are free (no request in flight, none of the window's cool-down
-- left), so a slot is never used by two processes within one window. A
-- process that dies loses its slots when its lease expires (its TTL covers
-- its last requests' cool-down). `wants` is the highest lane a process has
-- waiting and not served (0 none, 1 backfill, 2 poll, 3 write): the others
-- see it and give back what they hold beyond their fair share, or beyond
-- half of it for a lower lane than the one waiting.
--
-- sequin.rate_account holds what every process of an account shares beyond
-- slots: until when the API said the account is limited (a 429's
-- Retry-After seen by one process holds back all of them), and how many
-- requests all of them sent, so each counts the others' requests against
-- a long-period quota (Salesforce's daily API requests) once.

CREATE TABLE sequin.rate_account (
    account text PRIMARY KEY,
    paused_until timestamptz,
    sent bigint NOT NULL DEFAULT 0
);

CREATE TABLE sequin.rate_lease (
    account text NOT NULL REFERENCES sequin.rate_account ON DELETE CASCADE,
    holder text NOT NULL,
    reads integer NOT NULL CHECK (reads >= 0),
    total integer NOT NULL CHECK (total >= reads),
    wants smallint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (account, holder)
);

-- Takes, keeps and gives back slots of several accounts at once, in the
-- order given (callers sort them, so two processes lock accounts in the
-- same order), each leased for its `p_ttl` seconds. For each account, the
-- holder keeps at most what its row still holds (`p_reads`, `p_total`),
-- asks for more (`p_want_reads` read slots, `p_want_total` slots for
-- writes), and gets what the limit leaves. `p_sent`: requests it sent since
-- its last call, added to the account's count.
-- Returns what it holds now, how many processes hold slots of the account,
-- the highest lane the others have waiting, the account's pause and its
-- count of requests sent.
CREATE FUNCTION sequin.rate_take(
    p_holder text,
    p_accounts text[],
    p_ttl double precision[],
    p_capacity integer[],
    p_read_capacity integer[],
    p_reads integer[],
    p_total integer[],
    p_want_reads integer[],
    p_want_total integer[],
    p_wants smallint[],
    p_pause timestamptz[],
    p_sent bigint[])
RETURNS TABLE (account text, reads integer, total integer, holders integer,
               contended smallint, paused_until timestamptz, sent bigint)
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    i integer;
    a text;
    v_pause timestamptz;
    v_sent bigint;
    own_reads integer;
    own_total integer;
    o_reads integer;
    o_total integer;
    o_wants smallint;
    o_count integer;
    k_reads integer;
    k_total integer;
    add_reads integer;
    add_total integer;
    v_wants smallint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_accounts, 1), 0) LOOP
        a := p_accounts[i];
        INSERT INTO sequin.rate_account AS r (account) VALUES (a) ON CONFLICT DO NOTHING;
        UPDATE sequin.rate_account r
           SET sent = r.sent + p_sent[i],
               paused_until = CASE WHEN p_pause[i] > coalesce(r.paused_until, '-infinity')
                                   THEN p_pause[i] ELSE r.paused_until END
         WHERE r.account = a
        RETURNING r.paused_until, r.sent INTO v_pause, v_sent;
        DELETE FROM sequin.rate_lease l WHERE l.account = a AND l.expires_at < now();
        SELECT l.reads, l.total INTO own_reads, own_total FROM sequin.rate_lease l
         WHERE l.account = a AND l.holder = p_holder;
        SELECT coalesce(sum(l.reads), 0), coalesce(sum(l.total), 0),
               coalesce(max(l.wants), 0), count(*)
          INTO o_reads, o_total, o_wants, o_count
          FROM sequin.rate_lease l WHERE l.account = a AND l.holder <> p_holder;
        -- What it keeps: never more than its row holds (an expired row holds nothing).
        k_total := least(p_total[i], coalesce(own_total, 0));
        k_reads := least(p_reads[i], coalesce(own_reads, 0), k_total);
        add_reads := greatest(0, least(p_want_reads[i],
                                       p_read_capacity[i] - o_reads - k_reads,
                                       p_capacity[i] - o_total - k_total));
        k_reads := k_reads + add_reads;
        k_total := k_total + add_reads;
        add_total := greatest(0, least(p_want_total[i], p_capacity[i] - o_total - k_total));
        k_total := k_total + add_total;
        v_wants := CASE WHEN add_reads < p_want_reads[i] OR add_total < p_want_total[i]
                        THEN p_wants[i] ELSE 0 END;
        IF k_total = 0 AND v_wants = 0 THEN
            DELETE FROM sequin.rate_lease l WHERE l.account = a AND l.holder = p_holder;
        ELSE
            INSERT INTO sequin.rate_lease AS l (account, holder, reads, total, wants, expires_at)
            VALUES (a, p_holder, k_reads, k_total, v_wants, now() + make_interval(secs => p_ttl[i]))
            ON CONFLICT ON CONSTRAINT rate_lease_pkey DO UPDATE
               SET reads = excluded.reads, total = excluded.total,
                   wants = excluded.wants, expires_at = excluded.expires_at;
        END IF;
        account := a;
        reads := k_reads;
        total := k_total;
        holders := o_count + CASE WHEN k_total > 0 OR v_wants > 0 THEN 1 ELSE 0 END;
        contended := o_wants;
        paused_until := v_pause;
        sent := v_sent;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Who holds which slots, for `sequin status` and dashboards.
CREATE VIEW sequin.rate_status AS
SELECT l.account, l.holder, l.reads, l.total, l.wants, l.expires_at, r.paused_until
  FROM sequin.rate_lease l
  JOIN sequin.rate_account r USING (account)
 WHERE l.expires_at > now();

REVOKE ALL ON sequin.rate_account, sequin.rate_lease FROM PUBLIC;
REVOKE ALL ON FUNCTION sequin.rate_take(text, text[], double precision[], integer[], integer[],
    integer[], integer[], integer[], integer[], smallint[], timestamptz[], bigint[]) FROM PUBLIC;
GRANT SELECT ON sequin.rate_status TO PUBLIC;
