-- migrate: no-transaction
-- A request id is unique within its project, not across projects: a request of one
-- project must never be taken for another project's (it was, silently). The unique
-- index is built without blocking writers; the old global uniqueness is dropped after
-- the rollout (post/0007), once no process of the previous release needs it for its
-- `ON CONFLICT (request_id)`.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS jobs_project_request_idx ON jobs (project_id, request_id);
