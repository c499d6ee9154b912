"""A chunk always fits a task message: the chunk size shrinks for long identities, and a
task's encoded size stays within its bound whatever the characters."""

from __future__ import annotations

import orjson

from schemas.wire import task_item, task_items, task_message
from worker.store.dispatch import DueJob, plan_tasks, split_into_chunks
from worker.store.jobs import JobSizing

SIZING = JobSizing(chunk_size=10_000, task_max_bytes=1024 * 1024)


def test_ordinary_identities_keep_the_configured_chunk_size() -> None:
    # With the default 4 MiB tasks, 10,000 emails of ordinary length fit by the bound.
    chunk_size, _ = JobSizing().for_identities([("email", f"someone.{i}@example.com") for i in range(100)])
    assert chunk_size == 10_000


def test_worst_case_identities_get_chunks_that_still_fit() -> None:
    # Control characters are escaped six bytes each: the worst any character can grow.
    nasty = "\x01" * 1024
    identities = [("n" * 255, nasty)] * 3000
    chunk_size, per_identity = SIZING.for_identities(identities)
    assert chunk_size < 3000
    job = DueJob(1, 1, "ALL", len(identities), chunk_size, per_identity, ("p",))
    plans = plan_tasks([job], ("p",), 10_000, 1000, SIZING.task_max_bytes)
    for plan in plans:
        [chunk] = plan.chunks
        items = [task_item(1, 1, "ALL", identities[chunk.seq_from : chunk.seq_to])]
        body = task_message("00000000-0000-0000-0000-000000000000", "p", task_items(items))
        assert len(body) <= SIZING.task_max_bytes
        assert orjson.loads(body)["items"][0]["identities"][0]["id"] == nasty
    assert sum(c.size for c in split_into_chunks(job)) == 3000
