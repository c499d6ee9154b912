-- Cheaper writes on the hot path. Each request writes a job row, and updates it twice
-- (running, then completed); `deletion-worker bench` showed index maintenance to be
-- about 40% of Postgres's CPU time, most of it on `jobs`.

-- Identifiers compare as bytes. They are only ever looked up by equality; under a
-- linguistic collation every comparison in their indexes went through the locale.
-- (Changing the collation rebuilds these indexes; the table itself is not rewritten.)
ALTER TABLE jobs
    ALTER COLUMN request_id TYPE text COLLATE "C",
    ALTER COLUMN workorder_id TYPE text COLLATE "C",
    ALTER COLUMN bundle_id TYPE text COLLATE "C";
ALTER TABLE product_status ALTER COLUMN product TYPE text COLLATE "C";
ALTER TABLE task_chunks ALTER COLUMN product TYPE text COLLATE "C";

-- Work-order and bundle ids that grow with time: a UUID of version 7 (RFC 9562), whose
-- first 48 bits are Unix milliseconds and the rest random. New ids then land at the
-- right edge of their unique indexes instead of on a random page each.
CREATE FUNCTION deletion_time_ordered_uuid() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT (
        lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || '7'                      -- version
        || substr(r.hex, 14, 3)     -- random (after the v4 version digit)
        || substr(r.hex, 17, 16)    -- variant digit of the v4 UUID (RFC variant), random
    )::uuid
    FROM (SELECT replace(gen_random_uuid()::text, '-', '') AS hex) AS r
$$;
ALTER TABLE jobs
    ALTER COLUMN workorder_id SET DEFAULT 'DI-' || deletion_time_ordered_uuid(),
    ALTER COLUMN bundle_id SET DEFAULT 'BN-' || deletion_time_ordered_uuid();

-- Jobs waiting to be dispatched, and ended jobs waiting for their identities to be
-- hashed, are found through small tables of their own instead of partial indexes on
-- `jobs`. An index on `jobs` that names `status` or `finished_at` (even in its WHERE)
-- makes every status change a non-HOT update, which writes a new entry into each of the
-- job's indexes; without one, the two status updates of a job stay on its heap page.

-- A row per scheduled job, from its creation until a dispatcher takes it (in the same
-- transaction that publishes its tasks, so a dispatch that fails puts it back).
CREATE TABLE dispatch_queue (
    due_at  timestamptz NOT NULL,   -- startAt, or the creation time
    job_id  bigint NOT NULL,
    PRIMARY KEY (due_at, job_id)
);
INSERT INTO dispatch_queue (due_at, job_id)
    SELECT coalesce(start_at, created_at), id FROM jobs WHERE status = 'scheduled';
DROP INDEX jobs_due_idx;

-- A row per ended job whose identity values are still stored, until they are hashed.
CREATE TABLE retention_queue (
    finished_at timestamptz NOT NULL,
    job_id      bigint NOT NULL,
    PRIMARY KEY (finished_at, job_id)
);
INSERT INTO retention_queue (finished_at, job_id)
    SELECT finished_at, id FROM jobs WHERE finished_at IS NOT NULL AND identities_hashed_at IS NULL;
DROP INDEX jobs_retention_idx;

-- Room on every page for one new version of each of its rows. Status updates come in
-- batches: one transaction updates hundreds of rows that were inserted together and share
-- their pages, so each page needs space for all of their new versions at once (the old
-- ones are not pruned before that transaction ends). At fillfactor 80 only a quarter to a
-- third of these updates stayed HOT. Applies to pages written from now on.
ALTER TABLE jobs SET (fillfactor = 50);
ALTER TABLE product_status SET (fillfactor = 50);
ALTER TABLE task_chunks SET (fillfactor = 50);
