-- migrate: no-transaction
-- The reconciler's sweep puts an ended job on retention_queue unless it is there already,
-- and asks by job id; the table's key is (finished_at, job_id), so each ask read the
-- whole queue. The sweep's pages of 10,000 jobs were then 10,000 scans of it (2.2-3.2 s a
-- page with 63,000 rows queued, measured with auto_explain; the queue holds every ended
-- job until retention hashes it, millions in production). One index entry per ended job
-- makes each ask a lookup. Built without blocking writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS retention_queue_job_idx ON retention_queue (job_id);
