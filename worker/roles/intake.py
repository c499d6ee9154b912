"""Intake: deletion requests from `deletion.requests` become jobs in Postgres."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from schemas import DeletionRequest
from schemas.status import JobStatus
from worker import metrics, tracing
from worker.amqp import Delivery, QueueNames
from worker.due_dates import DuePolicy, from_epoch_ms
from worker.roles.batch import DONE, BatchConsumer, DeadLetter, Disposition, Probe, parse_body
from worker.roles.consuming import ConsumerOptions
from worker.store.jobs import JobSizing, NewJob, create_jobs, existing_job_ids
from worker.store.projects import project_ids_by_key
from worker.webhooks.urls import WebhookUrlError, check_webhook_url

log = structlog.get_logger(__name__)


def parse_request(
    body: bytes, max_bytes: int, max_identities: int, allow_private_callbacks: bool = False
) -> DeletionRequest | DeadLetter:
    if len(body) > max_bytes:
        return DeadLetter(f"limit: message of {len(body)} bytes exceeds {max_bytes}")
    request = parse_body(DeletionRequest, body)
    if isinstance(request, DeadLetter):
        return request
    if len(request.identities) > max_identities:
        return DeadLetter(f"limit: {len(request.identities)} identities exceed {max_identities}")
    for url in request.callback_urls or ():
        try:
            check_webhook_url(url, allow_private=allow_private_callbacks)
        except WebhookUrlError as error:
            return DeadLetter(f"callbackUrls: {error}")
    return request


def to_new_job(request: DeletionRequest, project_id: int, due: DuePolicy, trace_parent: str | None = None) -> NewJob:
    start_at = from_epoch_ms(request.start_at)
    return NewJob(
        request_id=request.request_id,
        project_id=project_id,
        identities=[(identity["namespace"]["code"], identity["id"]) for identity in request.identities],
        action=request.action,
        dataset_id=request.dataset_id,
        start_at=start_at,
        description=request.description,
        display_name=request.display_name,
        reference_id=request.reference_id,
        regulation=request.regulation,
        due_at=due.due_at(request.regulation, from_epoch_ms(request.due_at)),
        callback_urls=tuple(dict.fromkeys(request.callback_urls or ())),  # each once
        dry_run=request.dry_run,
        trace_parent=trace_parent,
    )


class IntakeRole(BatchConsumer):
    def __init__(
        self,
        queue: QueueNames,
        options: ConsumerOptions,
        *,
        pool: asyncpg.Pool,
        probe: Probe,
        products: list[str],
        notify_channel: str,
        max_bytes: int,
        max_identities: int,
        sizing: JobSizing,
        due: DuePolicy,
        allow_private_callbacks: bool = False,
    ) -> None:
        super().__init__("intake", queue, options, probe)
        self.sizing = sizing
        self.due = due
        self.allow_private_callbacks = allow_private_callbacks
        self.pool = pool
        self.products = products
        self.notify_channel = notify_channel
        self.max_bytes = max_bytes
        self.max_identities = max_identities
        # Project ids never change once created, so a key found once stays valid.
        self._project_ids: dict[str, int] = {}

    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        dispositions: list[Disposition] = [DONE] * len(batch)
        parsed: dict[int, DeletionRequest] = {}
        for index, message in enumerate(batch):
            result = parse_request(message.body, self.max_bytes, self.max_identities, self.allow_private_callbacks)
            if isinstance(result, DeadLetter):
                dispositions[index] = result
            else:
                parsed[index] = result
        if not parsed:
            return dispositions

        async with self.pool.acquire() as connection:
            unknown_keys = {r.project_key for r in parsed.values()} - self._project_ids.keys()
            if unknown_keys:
                self._project_ids.update(await project_ids_by_key(connection, sorted(unknown_keys)))
            jobs: dict[tuple[int, str], NewJob] = {}
            repeated_in_batch = 0
            for index, request in parsed.items():
                project_id = self._project_ids.get(request.project_key)
                if project_id is None:
                    dispositions[index] = DeadLetter("unknown project: no project has this projectKey")
                    continue
                job = to_new_job(request, project_id, self.due, tracing.traceparent_of(batch[index].headers))
                if job.key in jobs:
                    repeated_in_batch += 1  # the same request twice in one batch: one job
                else:
                    jobs[job.key] = job
            created = await create_jobs(
                connection, list(jobs.values()), self.products, self.notify_channel, self.sizing
            )
            seen_before = [job for key, job in jobs.items() if key not in created]
            existing = await existing_job_ids(connection, [job.key for job in seen_before]) if seen_before else []

        if created:
            metrics.JOB_TRANSITIONS.labels(JobStatus.SCHEDULED).inc(len(created))
            log.info(
                "jobs_created",
                count=len(created),
                identity_count=sum(len(jobs[key].identities) for key in created),
                job_ids=sorted(created.values())[:50],
            )
        if seen_before or repeated_in_batch:
            # Recognised as requests already accepted in their project: acked, nothing new
            # to do. Said out loud (ids only), so that a producer reusing request ids sees it.
            log.info(
                "duplicate_requests",
                count=len(seen_before) + repeated_in_batch,
                repeated_in_batch=repeated_in_batch,
                project_ids=sorted({job.project_id for job in seen_before})[:50],
                existing_job_ids=existing[:50],
            )
        return dispositions
