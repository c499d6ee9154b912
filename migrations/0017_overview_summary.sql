-- The console overview's counts of settled jobs, kept by the maintenance role
-- (worker.store.overview_summary) so the overview reads a few hundred rows instead of
-- every job of the organization (1.1-1.5 s at a million jobs).
--
-- A job is counted in exactly one place: in the summary once settled (ended, and none
-- of its products still waiting or running); in `overview_pending` while it was still
-- active when the pass went past its id; or live, above the watermark. The hot path
-- (intake, dispatch, acks) writes none of these tables, and no index on `jobs` is added
-- (see 0002: one naming the status would make status updates non-HOT). Retrying a
-- failed job and deleting jobs take a settled job back out (unsettle).
--
-- Safe on a live database: new tables only. The pass fills them in bounded steps.

CREATE TABLE overview_watermark (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    job_id     bigint NOT NULL  -- every job with a lower or equal id is settled or pending
);
INSERT INTO overview_watermark (job_id) VALUES (0);

CREATE TABLE overview_pending (
    job_id  bigint PRIMARY KEY
);

-- Settled jobs by project, status, the UTC day each was received and the day it ended.
CREATE TABLE overview_days (
    project_id    bigint NOT NULL,
    status        text NOT NULL,
    received_day  date NOT NULL,
    finished_day  date NOT NULL,
    n             bigint NOT NULL,
    PRIMARY KEY (project_id, received_day, status, finished_day)
);

-- Settled jobs' products, by the day the job was received: the 30-day failure rates.
CREATE TABLE overview_products (
    project_id    bigint NOT NULL,
    received_day  date NOT NULL,
    product       text COLLATE "C" NOT NULL,
    n             bigint NOT NULL,  -- product rows, whatever their status
    failed        bigint NOT NULL,
    finished      bigint NOT NULL,
    PRIMARY KEY (project_id, received_day, product)
);
