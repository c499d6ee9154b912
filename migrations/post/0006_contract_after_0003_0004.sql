-- After the rollout of the release that brought 0003-0005 (no process of the previous
-- release left): request ids are unique per project only, and the product status check
-- written NOT VALID by 0003 is checked against existing rows (reads them, blocks nobody).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_request_id_key;
ALTER TABLE product_status VALIDATE CONSTRAINT product_status_status_check;
