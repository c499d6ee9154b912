"""How due jobs are split into chunks and packed into task messages."""

from __future__ import annotations

from worker.store.dispatch import DueJob, plan_tasks, product_tasks, split_into_chunks


def job(job_id: int, identities: int, chunk_size: int = 10) -> DueJob:
    return DueJob(job_id=job_id, project_id=1, dataset_id="ALL", identity_count=identities, chunk_size=chunk_size)


def test_large_job_is_split_into_chunks_covering_every_identity() -> None:
    chunks = split_into_chunks(job(1, 100_000, chunk_size=30_000))
    assert [(c.seq_from, c.seq_to) for c in chunks] == [
        (0, 30_000),
        (30_000, 60_000),
        (60_000, 90_000),
        (90_000, 100_000),
    ]
    assert [c.chunk_no for c in chunks] == [0, 1, 2, 3]


def test_small_jobs_share_a_task_up_to_the_limits() -> None:
    plans = plan_tasks([job(i, 1) for i in range(25)], max_identities=10, max_items=1000)
    assert [len(p.chunks) for p in plans] == [10, 10, 5]
    plans = plan_tasks([job(i, 1) for i in range(25)], max_identities=1000, max_items=7)
    assert [len(p.chunks) for p in plans] == [7, 7, 7, 4]


def test_every_chunk_is_planned_exactly_once() -> None:
    jobs = [job(1, 5), job(2, 23), job(3, 1), job(4, 10)]
    plans = plan_tasks(jobs, max_identities=10, max_items=3)
    planned = sorted((c.job_id, c.chunk_no) for p in plans for c in p.chunks)
    expected = sorted((c.job_id, c.chunk_no) for j in jobs for c in split_into_chunks(j))
    assert planned == expected
    assert all(p.identity_count <= 10 for p in plans)


def test_each_product_gets_every_plan_under_its_own_task_id() -> None:
    plans = plan_tasks([job(1, 3)], max_identities=10, max_items=10)
    tasks = product_tasks(plans, ["a", "b", "c"])
    assert sorted(t.product for t in tasks) == ["a", "b", "c"]
    assert len({t.task_id for t in tasks}) == 3
