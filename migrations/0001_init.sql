-- Tenancy: an organization owns projects and API keys.
CREATE TABLE organizations (
    id          text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    org_id      text NOT NULL REFERENCES organizations (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_org_idx ON projects (org_id);

-- Keys are shown once at creation; only a hash is kept. The prefix finds the row.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organizations (id),
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- One job is both a Jobs-API job and a work order.
CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    request_id       text NOT NULL UNIQUE,          -- idempotency key of the request
    project_id       bigint NOT NULL REFERENCES projects (id),
    workorder_id     text NOT NULL UNIQUE DEFAULT 'DI-' || gen_random_uuid(),
    bundle_id        text NOT NULL UNIQUE DEFAULT 'BN-' || gen_random_uuid(),
    action           text NOT NULL CHECK (action IN ('delete_user_data', 'delete_identity')),
    dataset_id       text NOT NULL DEFAULT 'ALL',
    reference_id     text,
    description      text NOT NULL DEFAULT '',
    display_name     text NOT NULL DEFAULT '',
    created_by       text,
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'running', 'completed', 'failed', 'cancelled')),
    errors           jsonb,
    identity_count   integer NOT NULL,
    -- Identities per chunk, fixed when the job is created so that the chunk count each
    -- product expects (product_status.chunks_total) can be written at once.
    chunk_size       integer NOT NULL CHECK (chunk_size > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz,
    start_at         timestamptz,
    dispatched_at    timestamptz,
    finished_at      timestamptz,
    identities_hashed_at timestamptz
) WITH (fillfactor = 80);  -- room on each page keeps status updates HOT (no index churn)
CREATE INDEX jobs_project_newest_idx ON jobs (project_id, id DESC);
CREATE INDEX jobs_due_idx ON jobs (start_at NULLS FIRST, id) WHERE status = 'scheduled';
CREATE INDEX jobs_retention_idx ON jobs (finished_at)
    WHERE finished_at IS NOT NULL AND identities_hashed_at IS NULL;

-- The tables below hang off jobs but carry no foreign key: their rows are written in the
-- job's own transaction, and a per-row foreign-key check made the COPY of a
-- 100,000-identity job six times slower. worker.store.jobs.delete_jobs removes a job
-- with everything that belongs to it.

-- Identity values are personal data: `value` is cleared (replaced by `value_hash`, a keyed
-- hash) once the job has ended and the retention period has passed.
CREATE TABLE job_identities (
    job_id      bigint NOT NULL,
    seq         integer NOT NULL,
    namespace   text NOT NULL,
    value       text,
    value_hash  bytea,
    PRIMARY KEY (job_id, seq)
);

-- Per job and product: the productStatusDetails of the work-order view.
CREATE TABLE product_status (
    job_id          bigint NOT NULL,
    product         text NOT NULL,
    status          text NOT NULL DEFAULT 'waiting'
                    CHECK (status IN ('waiting', 'running', 'success', 'failed', 'cancelled')),
    chunks_total    integer NOT NULL,
    chunks_success  integer NOT NULL DEFAULT 0,
    chunks_failed   integer NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),   -- when the latest status was set
    PRIMARY KEY (job_id, product)
) WITH (fillfactor = 80);

-- One row per (job, product, chunk): the unit a product task carries and an
-- acknowledgement settles. Acks are applied only to a chunk still 'waiting', so a
-- redelivered acknowledgement changes nothing.
CREATE TABLE task_chunks (
    job_id      bigint NOT NULL,
    product     text NOT NULL,
    chunk_no    integer NOT NULL,
    task_id     uuid NOT NULL,
    seq_from    integer NOT NULL,
    seq_to      integer NOT NULL,                   -- exclusive
    status      text NOT NULL DEFAULT 'waiting'
                CHECK (status IN ('waiting', 'success', 'failed', 'cancelled')),
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    acked_at    timestamptz,
    PRIMARY KEY (job_id, product, chunk_no)
) WITH (fillfactor = 80);
CREATE UNIQUE INDEX task_chunks_task_idx ON task_chunks (task_id, job_id);
