-- After the rollout of the release that brought 0003-0005: the product status check
-- written NOT VALID by 0003 is checked against existing rows. VALIDATE reads the table
-- under a lock that blocks neither readers nor writers; in a file of its own, so that no
-- other lock is held while it scans.
ALTER TABLE product_status VALIDATE CONSTRAINT product_status_status_check;
