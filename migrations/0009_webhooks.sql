-- Webhooks: a project's subscriptions to its jobs' lifecycle events, the secrets that
-- sign what is sent, and the deliveries the notify role (worker.roles.notify) makes.
--
-- A delivery is a row, not a message: each has its own next attempt, so an endpoint
-- that is down or slow holds back only its own rows. Rows are grouped by endpoint (the
-- URL's scheme://host:port) in `webhook_endpoints`, which the notify role walks to take
-- a few due rows of every endpoint per round, however many one dead endpoint has piled
-- up; an endpoint that keeps failing is probed on a backoff of its own instead of with
-- every row it owes.
--
-- Secrets are stored sealed (AES-GCM under DELETION_WEBHOOK_SECRET_KEY), not hashed:
-- signing needs them in plaintext.
--
-- Safe on a live database: new tables, indexes on them and one new function only.

CREATE TABLE webhook_subscriptions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id   bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url          text NOT NULL,
    -- Exact event types, or patterns in which `*` matches any run of characters
    -- (`job.*`, `product.*.failed`, `*`).
    event_types  text[] NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_project_idx ON webhook_subscriptions (project_id);

-- The signing secrets of a subscription, or a project's callback secret (it signs the
-- deliveries to its requests' own callbackUrls). A rotation leaves two active for a
-- while; `retire_at` is when one stops signing (NULL: until the next rotation).
CREATE TABLE webhook_secrets (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id      uuid REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    callback_project_id  bigint REFERENCES projects (id) ON DELETE CASCADE,
    sealed               bytea NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    retire_at            timestamptz,
    CHECK ((subscription_id IS NULL) <> (callback_project_id IS NULL))
);
CREATE INDEX webhook_secrets_subscription_idx ON webhook_secrets (subscription_id) WHERE subscription_id IS NOT NULL;
CREATE INDEX webhook_secrets_callback_idx ON webhook_secrets (callback_project_id) WHERE callback_project_id IS NOT NULL;

-- The endpoint a URL is delivered to: what one backoff and one concurrency limit cover.
CREATE FUNCTION deletion_webhook_endpoint(url text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(substring(lower(url) FROM '^[a-z][a-z0-9+.-]*://[^/?#]+'), lower(url))
$$;

-- One row per endpoint with deliveries, or that had some lately. `next_attempt_at` is
-- when a round may next take its rows: '-infinity' or a past time when some are due,
-- a future time while the endpoint backs off (`failures` in a row) or its rows wait,
-- 'infinity' when it owes nothing.
CREATE TABLE webhook_endpoints (
    endpoint         text PRIMARY KEY,
    next_attempt_at  timestamptz NOT NULL DEFAULT '-infinity',
    failures         integer NOT NULL DEFAULT 0,
    seen_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_due_idx ON webhook_endpoints (next_attempt_at);

-- One row per (event, subscription) and per (event, callback URL) until it is delivered,
-- dropped (410) or given up (moved to the `<prefix>.webhooks.dead` queue). A row being
-- sent is leased by pushing `next_attempt_at` past the call's time-out.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text NOT NULL,
    subscription_id  uuid REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,  -- NULL: a callback URL
    project_id       bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url              text NOT NULL,
    endpoint         text NOT NULL,
    event            jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text
);
-- An event reaches a target once, however often its outbox row was relayed or its dead
-- letter replayed.
CREATE UNIQUE INDEX webhook_deliveries_once_idx ON webhook_deliveries (event_id, coalesce(subscription_id::text, url));
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint, next_attempt_at);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);
