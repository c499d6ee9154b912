-- migrate: no-transaction
-- Finding a person's jobs by identity (the console's search, by value or, after
-- retention, by keyed hash) read the whole of job_identities: a row per identity of every
-- job ever taken, tens of millions once 100,000-identity work orders come in. Hash
-- indexes: the lookups are equality only, and an entry is a 4-byte hash code whatever the
-- value's length, so each identity written costs the least. Partial: a value is replaced
-- by its hash at retention, and each row is in one index or the other. Built without
-- blocking writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS job_identities_value_idx
    ON job_identities USING hash (value) WHERE value IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS job_identities_value_hash_idx
    ON job_identities USING hash (value_hash) WHERE value_hash IS NOT NULL;
