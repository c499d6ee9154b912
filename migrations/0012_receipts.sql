-- Signed deletion receipts (worker.store.receipts, worker.receipts). A receipt is built
-- and signed on its first request, from the job's committed terminal state and its audit
-- chain head, and stored here so that every later request answers the same bytes.
-- Issuing on demand keeps signing (and hashing every identity of a large job) off the
-- path that ends jobs.
--
-- One receipt per ending: `finished_at` is the ending it attests. A job that is ended
-- again later (a retry of its failed products) gets a new receipt for its new ending;
-- the earlier one stays, true of the state it described.
--
-- Storing a receipt appends `receipt.issued` to the job's audit trail (trigger below,
-- through migrations/0011's append), with the SHA-256 of the receipt's bytes: the trail
-- then vouches for the receipt, as the receipt does for the trail up to its head.
--
-- Safe on a live database: a new table, function and trigger.

CREATE TABLE receipts (
    job_id       bigint NOT NULL,
    finished_at  timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL,
    key_id       text NOT NULL,
    document     text NOT NULL,           -- the signed receipt, exactly as served
    PRIMARY KEY (job_id, finished_at)
);

CREATE FUNCTION deletion_audit_receipts_issued() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    PERFORM deletion_audit_append(
        array_agg(n.job_id),
        array_agg('receipt.issued'::text),
        array_agg(json_build_object(
            'keyId', n.key_id,
            'sha256', encode(sha256(convert_to(n.document, 'UTF8')), 'hex'),
            'finishedAt', to_char(n.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text))
    FROM new_rows n;
    RETURN NULL;
END $$;

CREATE TRIGGER receipts_audit AFTER INSERT ON receipts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deletion_audit_receipts_issued();
