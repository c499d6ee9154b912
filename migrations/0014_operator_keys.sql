-- Operator keys (`deletion-worker keys create --operator`): besides their organization's
-- jobs, they see the deployment's queues and dead letters in the web console. A column
-- with a constant default is added without rewriting the table.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS operator boolean NOT NULL DEFAULT false;
