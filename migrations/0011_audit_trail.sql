-- The audit trail: every step of a job's life (received, dispatched, each product's
-- status, ended or cancelled and by whom, identities hashed at retention, receipt issued)
-- is an entry in `audit_entries`, written by triggers in the transaction that makes the
-- change: an entry exists if and only if its change was committed, whichever code path
-- made it (acks, dispatch, cancel, retention, the reconciler, an operator's SQL).
--
-- Tamper-evident: the entries of a job form a hash chain. Entry n stores the hash of
-- entry n-1 (`prev_hash`; 32 zero bytes for the first) and its own
--     hash = sha256(prev_hash || utf8(job_id \n seq \n kind \n at \n detail))
-- with `at` written as YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC) and `detail` the entry's JSON
-- text exactly as stored (a `json` column keeps its text as written). Changing, removing
-- or inserting an entry breaks the chain from there on (worker.store.audit verifies it).
--
-- No identity value is ever written here (the table is append-only: a value could never
-- be hashed away later). Product error texts come from products and may quote what they
-- failed on, so entries carry statuses and counts, not those texts.
--
-- Cost: one entry per job per statement (a statement settling three products of a job
-- writes one entry listing the three), written set-based by one INSERT per statement
-- from the statement's transition tables; no per-row trigger.
--
-- Concurrency: `audit_heads` holds each job's latest seq and hash. An append is an
-- upsert of the head row (ON CONFLICT DO UPDATE locks the row it updates), computing
-- the new hash from the head it locked; two transactions appending to one job are thus
-- serialised on that row, and the second chains onto the first (the chain never forks).
-- Heads are upserted in job id order, so two statements locking the heads of the same
-- jobs wait for each other instead of deadlocking.
--
-- Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE of audit_entries to
-- everyone, the table's owner included (README "Proving a deletion": running the
-- workers with a role that has only INSERT and SELECT on it).
--
-- Safe on a live database: new tables, functions and triggers; no rewrite. Jobs created
-- before this migration get their first entry at their next change.

CREATE TABLE audit_entries (
    job_id     bigint NOT NULL,
    seq        integer NOT NULL,                 -- 1, 2, ... within the job
    kind       text COLLATE "C" NOT NULL,
    at         timestamptz NOT NULL,
    detail     json NOT NULL,                    -- json, not jsonb: hashed as its stored text
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE audit_heads (
    job_id     bigint PRIMARY KEY,
    seq        integer NOT NULL,
    at         timestamptz NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    -- Only the proposed row of an upsert carries the entry (ON CONFLICT reads it as
    -- `excluded`); an update leaves them NULL, keeping the row small and its updates HOT.
    kind       text COLLATE "C",
    detail     text
) WITH (fillfactor = 50);  -- updated in place once per entry: room for HOT updates

-- The chain's hash of one entry (see the top of this file); `at_text` is the entry's
-- time as written there. A single expression, declared STABLE like the casts and
-- convert_to in it (IMMUTABLE would stop the planner from inlining it: a function call
-- per entry, measured at a third of the trigger's time).
CREATE FUNCTION deletion_audit_hash(prev bytea, job_id bigint, seq integer, kind text, at_text text, detail text)
RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT sha256(prev || convert_to(
        job_id || E'\n' || seq || E'\n' || kind || E'\n' || at_text || E'\n' || detail, 'UTF8'))
$$;

-- Appends one entry per element to the chains of these jobs; job_ids must be distinct
-- (one entry per job per call). An upsert of the head: a job without one (new, or
-- created before this migration) starts its chain, any other chains onto the head it
-- locked (in READ COMMITTED the update reads the newest committed head, whatever the
-- statement's snapshot). `at` is the clock when the statement appends, formatted once
-- per statement; `seq`, not `at`, orders a job's entries.
CREATE FUNCTION deletion_audit_append(job_ids bigint[], kinds text[], details text[])
RETURNS void LANGUAGE sql AS $$
    WITH input AS MATERIALIZED (
        SELECT * FROM unnest(job_ids, kinds, details) AS e(job_id, kind, detail)
    ), t AS (
        SELECT c.at, to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_text
        FROM (SELECT clock_timestamp() AS at) c
    ), appended AS (
        INSERT INTO audit_heads AS h (job_id, seq, kind, at, detail, prev_hash, hash)
        SELECT e.job_id, 1, e.kind, t.at, e.detail, decode(repeat('00', 32), 'hex'),
               deletion_audit_hash(decode(repeat('00', 32), 'hex'), e.job_id, 1, e.kind, t.at_text, e.detail)
        FROM input e CROSS JOIN t
        ORDER BY e.job_id  -- heads are locked in this order: concurrent appenders never deadlock here
        ON CONFLICT (job_id) DO UPDATE SET
            seq = h.seq + 1,
            kind = NULL,
            at = excluded.at,
            detail = NULL,
            prev_hash = h.hash,
            hash = deletion_audit_hash(
                h.hash, h.job_id, h.seq + 1, excluded.kind, (SELECT at_text FROM t), excluded.detail)
        RETURNING h.job_id, h.seq, h.at, h.prev_hash, h.hash
    )
    INSERT INTO audit_entries (job_id, seq, kind, at, detail, prev_hash, hash)
    SELECT a.job_id, a.seq, e.kind, a.at, e.detail::json, a.prev_hash, a.hash
    FROM appended a JOIN input e USING (job_id)
$$;

-- Who made a change, when the code making it knows (a cancel over the API names the
-- caller's key prefix, the CLI "cli"): `SET LOCAL deletion.actor` in its transaction.
CREATE FUNCTION deletion_audit_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('deletion.actor', true), '')
$$;

-- Without JIT and with joins of transition tables through EXECUTE, like the event
-- triggers (0008, which says why).
CREATE FUNCTION deletion_audit_jobs_inserted() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    PERFORM deletion_audit_append(
        array_agg(n.id),
        array_agg('job.received'::text),
        array_agg(json_build_object(
            'requestId', n.request_id, 'workorderId', n.workorder_id, 'bundleId', n.bundle_id,
            'projectId', n.project_id, 'action', n.action, 'datasetId', n.dataset_id,
            'identityCount', n.identity_count, 'status', n.status,
            -- The API records the caller's key prefix; requests from the queue have none.
            'via', CASE WHEN n.created_by IS NULL THEN 'queue' ELSE 'api' END, 'createdBy', n.created_by,
            'regulation', n.regulation,
            'dueAt', to_char(n.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'startAt', to_char(n.start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))::text))
    FROM new_rows n;
    RETURN NULL;
END $$;

-- A status change, or the identities of an ended job hashed by retention. Other updates
-- (a work order's text) leave no entry.
CREATE FUNCTION deletion_audit_jobs_updated() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    EXECUTE $sql$
    SELECT deletion_audit_append(array_agg(c.id), array_agg(c.kind), array_agg(c.detail))
    FROM (
        SELECT n.id,
               CASE WHEN n.status IS DISTINCT FROM o.status THEN 'job.' || n.status ELSE 'job.identities_hashed' END
                   AS kind,
               CASE WHEN n.status IS DISTINCT FROM o.status
                    THEN json_build_object('status', n.status, 'from', o.status, 'by', deletion_audit_actor())
                    ELSE json_build_object('identityCount', n.identity_count)
               END::text AS detail
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
           OR (n.identities_hashed_at IS NOT NULL AND o.identities_hashed_at IS NULL)
    ) c
    $sql$;
    RETURN NULL;
END $$;

-- Products whose status changed, one entry per job listing them. `reason` is written
-- only for `skipped`, whose text is the worker's own (a product's error text is not).
CREATE FUNCTION deletion_audit_products_updated() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    EXECUTE $sql$
    SELECT deletion_audit_append(array_agg(c.job_id), array_agg('products'::text), array_agg(c.detail))
    FROM (
        SELECT n.job_id,
               json_build_object(
                   'products', json_agg(json_build_object(
                       'product', n.product, 'status', n.status, 'from', o.status,
                       'chunksTotal', n.chunks_total, 'chunksSuccess', n.chunks_success,
                       'chunksFailed', n.chunks_failed,
                       'reason', CASE WHEN n.status = 'skipped' THEN n.error END) ORDER BY n.product),
                   'by', deletion_audit_actor())::text AS detail
        FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id AND o.product = n.product
        WHERE n.status IS DISTINCT FROM o.status
        GROUP BY n.job_id
    ) c
    $sql$;
    RETURN NULL;
END $$;

CREATE FUNCTION deletion_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % on audit_entries refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION deletion_audit_refuse_change();

-- In the order acknowledgements lock these tables (product_status, then jobs).
CREATE TRIGGER product_status_audit AFTER UPDATE ON product_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deletion_audit_products_updated();
CREATE TRIGGER jobs_audit_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deletion_audit_jobs_inserted();
CREATE TRIGGER jobs_audit_updated AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deletion_audit_jobs_updated();
