-- OpenDSR requests (worker.api.routes_opendsr): what the OpenDSR API needs beside the
-- job it created. `subject_request_id` is the controller's idempotency key within a
-- project: the row is written first, in the job's transaction, so a concurrent request
-- with the same id waits for it and then finds the job; `fingerprint` binds the id to
-- the request it was first used for (the same id with another request is refused).
--
-- The status callback URLs live here, not in jobs.callback_urls: those receive the
-- lifecycle events themselves, signed with the project's HMAC secret, while an OpenDSR
-- controller expects the spec's callback body, signed with the processor certificate
-- (worker.opendsr). No identity value is kept here (nor the encoded request): identity
-- values stay in job_identities, where retention hashes them.
--
-- Safe on a live database: a new table and its indexes only.

CREATE TABLE opendsr_requests (
    project_id            bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    subject_request_id    uuid NOT NULL,
    -- NULL only inside the transaction that creates the job.
    job_id                bigint REFERENCES jobs (id) ON DELETE CASCADE,
    fingerprint           bytea NOT NULL,             -- SHA-256 of the request, canonically encoded
    regulation            text NOT NULL,
    api_version           text,                       -- as the controller sent it
    submitted_time        timestamptz NOT NULL,
    received_time         timestamptz NOT NULL DEFAULT now(),
    status_callback_urls  text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (project_id, subject_request_id)
);
-- The notify role finds a job's request (and its callback URLs) by job id.
CREATE UNIQUE INDEX opendsr_requests_job_idx ON opendsr_requests (job_id);
-- GET and DELETE name a request by its id alone (the project header is optional).
CREATE INDEX opendsr_requests_subject_idx ON opendsr_requests (subject_request_id);
