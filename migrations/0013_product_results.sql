-- What each product actually did (issue 15, parts 1 and 4): counts per chunk and per
-- product, the identities that failed, retries of only what failed, dry runs.
--
-- Counts live as integers on the rows acknowledgements already update (task_chunks,
-- product_status), written by the same statement that settles them. Per-identity rows
-- exist only for identities a product reported as failed, one by one: a chunk that
-- failed as a whole has none (its seq range says which identities it held), so a
-- product that is down costs no more writes than before.
--
-- Safe on a live database: nullable columns (no rewrite, no default to fill in) and a
-- new table; the previous release neither reads nor writes any of it.

-- Per chunk, summed over its attempts: rows the product deleted and identities it did not
-- find (NULL: the product did not say). `identities_failed`: how many of the chunk's
-- identities failed at its latest attempt. `failures_listed`: those are exactly the
-- chunk's rows in identity_failures (the product named them); otherwise every identity
-- the chunk carried failed. `retries`: how often only what failed was sent again.
ALTER TABLE task_chunks
    ADD COLUMN deleted bigint,
    ADD COLUMN not_found integer,
    ADD COLUMN identities_failed integer,
    ADD COLUMN failures_listed boolean,
    ADD COLUMN retries integer;

-- The same per job and product, and when the product's work started (the dispatch, or
-- its latest retry; NULL: the job's dispatched_at) and ended.
ALTER TABLE product_status
    ADD COLUMN deleted bigint,
    ADD COLUMN not_found bigint,
    ADD COLUMN identities_failed integer,
    ADD COLUMN retries integer,
    ADD COLUMN started_at timestamptz,
    ADD COLUMN finished_at timestamptz;

-- A dry run counts what would be deleted and deletes nothing. NULL reads as false.
ALTER TABLE jobs ADD COLUMN dry_run boolean;

-- One row per identity a product named as failed. No identity value is stored here: `seq`
-- points at job_identities, where retention replaces the value by its keyed hash; the
-- product's `reason` loses the identity's value at retention too
-- (worker.store.retention). No foreign key, like the other tables hanging off jobs (see
-- 0001); worker.store.jobs.delete_jobs removes the rows with their job.
CREATE TABLE identity_failures (
    job_id     bigint NOT NULL,
    product    text COLLATE "C" NOT NULL,
    seq        integer NOT NULL,
    chunk_no   integer NOT NULL,
    reason     text,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    -- Also the listing's order: by product, then as the identities were given.
    PRIMARY KEY (job_id, product, seq)
);

-- The audit trail's product entries (0011) now carry what the product said it did. Here
-- rather than in 0011: the columns exist only from this file on.
CREATE OR REPLACE FUNCTION deletion_audit_products_updated() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
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
                       'deleted', n.deleted, 'notFound', n.not_found, 'identitiesFailed', n.identities_failed,
                       'reason', CASE WHEN n.status = 'skipped' THEN n.error END) ORDER BY n.product),
                   'by', deletion_audit_actor())::text AS detail
        FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id AND o.product = n.product
        WHERE n.status IS DISTINCT FROM o.status
        GROUP BY n.job_id
    ) c
    $sql$;
    RETURN NULL;
END $$;
