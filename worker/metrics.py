"""Prometheus metrics of a worker process (the API registers its own in worker.api)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter("deletion_messages_consumed_total", "Messages taken from a queue and settled.", ["queue"])
MESSAGES_PUBLISHED = Counter(
    "deletion_messages_published_total", "Messages published and confirmed by the broker.", ["queue"]
)
PUBLISHES_REFUSED = Counter(
    "deletion_publishes_refused_total",
    "Messages the broker nacked and that were sent again (a queue electing a leader).",
)
MESSAGES_DEAD_LETTERED = Counter(
    "deletion_messages_dead_lettered_total", "Messages moved to a dead-letter queue.", ["queue", "reason"]
)
MESSAGES_RETRIED = Counter(
    "deletion_messages_retried_total", "Messages sent to a retry queue after a transient failure.", ["queue"]
)
BATCH_SIZE = Histogram(
    "deletion_batch_size",
    "Deliveries handled in one batch.",
    ["queue"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCH_DURATION = Histogram(
    "deletion_batch_duration_seconds",
    "Time to handle and settle one batch of deliveries.",
    ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HANDLER_DURATION = Histogram(
    "deletion_handler_duration_seconds",
    "Time a product handler took for one task.",
    ["product", "outcome"],
)
JOBS_BY_STATUS = Gauge("deletion_jobs", "Jobs by status (refreshed by the dispatch role).", ["status"])
JOB_TRANSITIONS = Counter("deletion_job_transitions_total", "Jobs that entered a status.", ["status"])
HEARTBEAT = Gauge("deletion_worker_heartbeat_timestamp_seconds", "Last time the worker loop was alive.")
CONSUMERS_ACTIVE = Gauge("deletion_consumers_active", "Consumers this process has on the broker.", ["queue"])
BROKER_CONNECTED = Gauge("deletion_broker_connected", "1 while connected to RabbitMQ.")
DATABASE_CONNECTED = Gauge("deletion_database_connected", "1 while the last database round trip succeeded.")
EXPECTED_CONSUMERS = Gauge("deletion_consumers_expected", "Consumers this process should have on the broker.")
PUBLISHER_BATCHED = Gauge(
    "deletion_publisher_batched", "1 when batches are written in one piece; 0 after a fallback to one by one."
)
ROLE_PROGRESS = Counter("deletion_role_progress_total", "Units of work a role settled.", ["role"])
ROLE_LAST_PROGRESS = Gauge(
    "deletion_role_last_progress_timestamp_seconds", "When a role last settled work or found none to do.", ["role"]
)
ROLE_PENDING_SINCE = Gauge(
    "deletion_role_pending_since_timestamp_seconds", "Since when a role holds unsettled work (0: none).", ["role"]
)
ROLE_WAITING = Gauge(
    "deletion_role_waiting", "1 while a role waits for an unavailable dependency.", ["role", "dependency"]
)
HANDED_BACK = Counter(
    "deletion_messages_handed_back_total",
    "Deliveries republished to their queue and acked instead of held (over the byte budget, on stop,"
    " during an outage, or returned by a lost session), so that their delivery count does not grow.",
    ["queue", "reason"],
)
CONSUMER_CANCELLED = Counter(
    "deletion_consumer_cancelled_total", "Consumers the broker cancelled (their queue was deleted).", ["queue"]
)
JOBS_STUCK = Gauge(
    "deletion_jobs_stuck", "Active jobs without progress for longer than DELETION_STUCK_AFTER.", ["reason"]
)
JOBS_REPAIRED = Counter("deletion_jobs_repaired_total", "Jobs the reconciler moved on.", ["repair"])
OUTBOX_PENDING = Gauge("deletion_task_outbox_pending", "Product tasks committed and not yet confirmed by the broker.")
EVENTS_PUBLISHED = Counter("deletion_events_published_total", "Lifecycle events the broker confirmed.")
EVENTS_PENDING = Gauge("deletion_events_pending", "Lifecycle events committed and not yet published.")
EVENTS_OLDEST_AGE = Gauge("deletion_events_oldest_age_seconds", "Age of the oldest unpublished lifecycle event.")
JOBS_OVERDUE = Gauge("deletion_jobs_overdue", "Active jobs past their due date, by project.", ["project"])
JOBS_AT_RISK = Gauge("deletion_jobs_at_risk", "Active jobs within the at-risk margin of their due date.", ["project"])
WEBHOOK_DELIVERIES = Counter(
    "deletion_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered (2xx), retried, gone (410), dead (given up or refused).",
    ["outcome"],
)
WEBHOOK_IN_FLIGHT = Gauge("deletion_webhook_in_flight", "Webhook calls this process has under way.")
WEBHOOK_PENDING = Gauge("deletion_webhook_pending", "Webhook deliveries not yet made.")
WEBHOOK_OLDEST_AGE = Gauge("deletion_webhook_oldest_age_seconds", "Age of the oldest webhook delivery not yet made.")
