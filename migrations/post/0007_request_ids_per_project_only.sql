-- After the rollout: request ids are unique per project only (jobs_project_request_idx,
-- 0004). The previous release relied on the global uniqueness for its
-- `ON CONFLICT (request_id)`; no process of it runs any more. A short exclusive lock.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_request_id_key;
