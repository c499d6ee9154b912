-- Idempotency-Key of the HTTP API, kept apart from request ids and apart per route
-- family (the Jobs API and work orders each have their own keys), with a fingerprint
-- of the request it was first used for: the same key with another request is refused.
CREATE TABLE idempotency_keys (
    project_id  bigint NOT NULL,
    family      text COLLATE "C" NOT NULL CHECK (family IN ('jobs', 'workorder')),
    key         text COLLATE "C" NOT NULL,
    fingerprint bytea NOT NULL,             -- SHA-256 of the request, canonically encoded
    job_id      bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, family, key)
);
