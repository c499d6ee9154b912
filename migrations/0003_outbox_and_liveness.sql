-- Nothing stranded: the task outbox, the running-jobs index table, task size bounds.
-- Safe on a live database: new tables and a nullable column only (no rewrite, no
-- long lock), and every statement gives up rather than queue behind a long transaction.

-- Product tasks committed by dispatch and not yet confirmed by the broker. Dispatch
-- commits a job's chunks (task_chunks) and a row here in one transaction, and only
-- then publishes; the row goes when every product's message of the plan is confirmed.
-- An acknowledgement can therefore never arrive before the chunks it settles, and a
-- dispatcher that dies after its commit leaves the row for another to publish (once
-- `claimed_until`, the lease of whoever publishes it, has passed).
CREATE TABLE task_outbox (
    plan_id       uuid PRIMARY KEY,
    task_ids      uuid[] NOT NULL,                -- one per product, in the order of `products`
    products      text[] COLLATE "C" NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0
);

-- A row per dispatched job until it ends: the reconciler finds running jobs here
-- instead of through an index on jobs.status (which would make every status change a
-- non-HOT update; see 0002).
CREATE TABLE running_jobs (
    job_id  bigint PRIMARY KEY,
    since   timestamptz NOT NULL
);
INSERT INTO running_jobs (job_id, since)
    SELECT id, coalesce(dispatched_at, created_at) FROM jobs WHERE status = 'running';

-- An upper bound of one identity's encoded size in a product task (see
-- schemas.wire.identity_bytes_bound): tasks are packed by bytes with it, and a job's
-- chunk size is chosen at creation so that a chunk fits DELETION_TASK_MAX_BYTES.
-- NULL for jobs created before this column: they are packed one chunk per task.
ALTER TABLE jobs ADD COLUMN identity_max_bytes integer;

-- A product named when a job was created but no longer configured when it was
-- dispatched ends as `skipped`, with the reason in `error`.
ALTER TABLE product_status DROP CONSTRAINT product_status_status_check;
ALTER TABLE product_status ADD CONSTRAINT product_status_status_check
    CHECK (status IN ('waiting', 'running', 'success', 'failed', 'cancelled', 'skipped')) NOT VALID;
