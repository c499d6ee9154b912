-- Lifecycle events: every change of a job's status or of a product's status for a job
-- is written here by a trigger, in the transaction that makes the change, so an event
-- exists if and only if its change was committed, whichever code path made it. The
-- events relay (worker.roles.events) publishes them to the `<prefix>.events` topic
-- exchange and deletes a row once the broker confirmed every event in it.
--
-- One row per statement, holding that statement's changes as an array: an
-- acknowledgement batch that settles 500 products writes one row, not 500, which keeps
-- the cost on the hot path to one insert. The relay makes each change the event that
-- schemas.events.LifecycleEvent describes; keep the two in step.
--
-- Due dates: a job may name the regulation it was requested under and carry the date
-- its deletion is due; while it is active, `due_watch` holds it, so the maintenance
-- role finds the jobs at risk or overdue without an index on jobs (see 0002 on why
-- jobs has none on a column that changes with the status).
--
-- Safe on a live database: new tables, nullable columns (no rewrite), new functions and
-- triggers.

-- callback_urls: where a request asked for its own job's events to be delivered
-- (worker.roles.notify), besides the project's webhook subscriptions.
ALTER TABLE jobs ADD COLUMN regulation text, ADD COLUMN due_at timestamptz, ADD COLUMN callback_urls text[];

CREATE TABLE due_watch (
    job_id        bigint PRIMARY KEY,
    project_id    bigint NOT NULL,
    due_at        timestamptz NOT NULL,
    at_risk_sent  boolean NOT NULL DEFAULT false,
    overdue_sent  boolean NOT NULL DEFAULT false
);
CREATE INDEX due_watch_due_idx ON due_watch (due_at);

-- What a trigger knows of one change, as typed fields: turning them into the event's
-- JSON (schemas.events.LifecycleEvent) is left to the relay, where orjson does it in a
-- few microseconds. Built as JSON here (json_agg over a row type, a random UUID each),
-- an event cost 35 us of Postgres CPU on the hot path; as this row type, 5 us.
CREATE TYPE deletion_event_change AS (
    type             text,
    status           text,
    job_id           bigint,
    request_id       text,
    workorder_id     text,
    bundle_id        text,
    project_key      text,
    organization     text,
    job_status       text,
    product          text,
    -- Every product's status for the job when the change was made, as two arrays in
    -- product order; NULL on job.scheduled (the products' rows come after the job's).
    product_names    text[],
    product_statuses text[],
    error            text,
    regulation       text,
    due_at           timestamptz
);

CREATE TABLE event_outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- When the statement made its changes; with the row's id and an event's place in
    -- `events` it also gives the event its id (worker.store.events), stable however
    -- often the row is published.
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    events        deletion_event_change[] NOT NULL,
    event_count   integer NOT NULL,
    -- Lease of the relay publishing the row; a relay that dies leaves it to another.
    claimed_until timestamptz NOT NULL DEFAULT '-infinity',
    attempts      integer NOT NULL DEFAULT 0
);

-- The functions below are set-based (one INSERT per statement, joins instead of per-row
-- look-ups): an acknowledgement batch of 5,000 results pays for its events in one pass.
-- They run without JIT whatever the server's setting: the planner cannot know how many
-- rows a transition table joins to (836 were planned as 13 million), and compiling the
-- plan cost 1-2 s on every dispatch round and acknowledgement batch. Statements that
-- join a transition table run through EXECUTE, planned for the rows at hand each time:
-- PL/pgSQL keeps a statement's first plan for the session, and one made for a 1-row
-- update joined the next 25,000-row update's tables by nested loop (218 s).

-- Every product's status of each job in `job_ids`, as two arrays in product order.
CREATE FUNCTION deletion_product_statuses(job_ids bigint[])
RETURNS TABLE (job_id bigint, names text[], statuses text[]) LANGUAGE sql STABLE AS $$
    SELECT ps.job_id, array_agg(ps.product ORDER BY ps.product), array_agg(ps.status ORDER BY ps.product)
    FROM product_status ps WHERE ps.job_id = ANY(job_ids) GROUP BY ps.job_id
$$;

-- A new job's row is inserted before its products' rows, so job.scheduled carries no
-- `products`.
CREATE FUNCTION deletion_jobs_inserted() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    INSERT INTO event_outbox (events, event_count)
    SELECT array_agg(ROW('job.' || n.status, n.status, n.id, n.request_id, n.workorder_id, n.bundle_id,
                         p.key, p.org_id, n.status, NULL, NULL, NULL, NULL, n.regulation, n.due_at
                     )::deletion_event_change ORDER BY n.id),
           count(*)
    FROM new_rows n JOIN projects p ON p.id = n.project_id
    HAVING count(*) > 0;
    INSERT INTO due_watch (job_id, project_id, due_at)
    SELECT id, project_id, due_at FROM new_rows WHERE due_at IS NOT NULL AND status IN ('scheduled', 'running');
    RETURN NULL;
END $$;

-- Joins, never `= ANY(array)` per row: an acks batch can end 25,000 jobs in one
-- statement, and a per-row scan of such an array is quadratic.
CREATE FUNCTION deletion_jobs_updated() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    EXECUTE $sql$
    WITH changed AS MATERIALIZED (
        SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
    ), statuses AS (
        SELECT * FROM deletion_product_statuses(ARRAY(SELECT id FROM changed))
    )
    INSERT INTO event_outbox (events, event_count)
    SELECT array_agg(ROW('job.' || n.status, n.status, n.id, n.request_id, n.workorder_id, n.bundle_id,
                         p.key, p.org_id, n.status, NULL,
                         coalesce(s.names, '{}'), coalesce(s.statuses, '{}'),
                         (SELECT string_agg(e, '; ') FROM jsonb_array_elements_text(n.errors) e),
                         n.regulation, n.due_at
                     )::deletion_event_change ORDER BY n.id),
           count(*)
    FROM new_rows n
    JOIN changed c ON c.id = n.id
    JOIN projects p ON p.id = n.project_id
    LEFT JOIN statuses s ON s.job_id = n.id
    HAVING count(*) > 0
    $sql$;
    -- An ended job is no longer watched.
    EXECUTE $sql$
    DELETE FROM due_watch w USING new_rows n
    WHERE w.job_id = n.id AND n.status IN ('completed', 'failed', 'cancelled')
    $sql$;
    -- A job whose due date was changed is watched anew.
    EXECUTE $sql$
    INSERT INTO due_watch (job_id, project_id, due_at)
    SELECT n.id, n.project_id, n.due_at FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.due_at IS DISTINCT FROM o.due_at AND n.due_at IS NOT NULL AND n.status IN ('scheduled', 'running')
    ON CONFLICT (job_id) DO UPDATE SET due_at = excluded.due_at, at_risk_sent = false, overdue_sent = false
    $sql$;
    RETURN NULL;
END $$;

CREATE FUNCTION deletion_products_updated() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    EXECUTE $sql$
    WITH changed AS MATERIALIZED (
        SELECT n.job_id, n.product, n.status, n.error
        FROM new_rows n JOIN old_rows o ON o.job_id = n.job_id AND o.product = n.product
        WHERE n.status IS DISTINCT FROM o.status
    ), statuses AS (
        SELECT * FROM deletion_product_statuses(ARRAY(SELECT DISTINCT job_id FROM changed))
    )
    INSERT INTO event_outbox (events, event_count)
    SELECT array_agg(ROW('product.' || c.product || '.' || c.status, c.status, j.id, j.request_id,
                         j.workorder_id, j.bundle_id, p.key, p.org_id, j.status, c.product,
                         s.names, s.statuses, c.error, j.regulation, j.due_at
                     )::deletion_event_change ORDER BY c.job_id, c.product),
           count(*)
    FROM changed c
    JOIN jobs j ON j.id = c.job_id
    JOIN projects p ON p.id = j.project_id
    JOIN statuses s ON s.job_id = c.job_id
    HAVING count(*) > 0
    $sql$;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_lifecycle_events_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deletion_jobs_inserted();
CREATE TRIGGER jobs_lifecycle_events_updated AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deletion_jobs_updated();
CREATE TRIGGER product_status_lifecycle_events AFTER UPDATE ON product_status
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deletion_products_updated();
