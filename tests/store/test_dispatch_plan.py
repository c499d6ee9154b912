"""How due jobs are split into chunks and packed into task messages."""

from __future__ import annotations

from worker.store.dispatch import DueJob, plan_round, plan_tasks, split_into_chunks

PRODUCTS = ("a", "b", "c")
NO_BYTE_LIMIT = 10**12


def job(
    job_id: int,
    identities: int,
    chunk_size: int = 10,
    per_identity: int | None = 60,
    products: tuple[str, ...] = PRODUCTS,
) -> DueJob:
    return DueJob(job_id, 1, "ALL", identities, chunk_size, per_identity, products)


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
    plans = plan_tasks([job(i, 1) for i in range(25)], PRODUCTS, 10, 1000, NO_BYTE_LIMIT)
    assert [len(p.chunks) for p in plans] == [10, 10, 5]
    plans = plan_tasks([job(i, 1) for i in range(25)], PRODUCTS, 1000, 7, NO_BYTE_LIMIT)
    assert [len(p.chunks) for p in plans] == [7, 7, 7, 4]


def test_tasks_are_packed_by_bytes_too() -> None:
    # 1 KB per identity bound, chunks of 10: a chunk is ~10 KB; at most 25 KB per task.
    plans = plan_tasks([job(i, 10, per_identity=1000) for i in range(6)], PRODUCTS, 10_000, 1000, 25_000)
    assert [len(p.chunks) for p in plans] == [2, 2, 2]
    assert all(p.bytes_bound <= 25_000 for p in plans)
    # A job whose size was never recorded travels one chunk per task.
    plans = plan_tasks([job(i, 1, per_identity=None) for i in range(3)], PRODUCTS, 10_000, 1000, 25_000)
    assert [len(p.chunks) for p in plans] == [1, 1, 1]


def test_every_chunk_is_planned_exactly_once() -> None:
    jobs = [job(1, 5), job(2, 23), job(3, 1), job(4, 10)]
    plans = plan_tasks(jobs, PRODUCTS, 10, 3, NO_BYTE_LIMIT)
    planned = sorted((c.job_id, c.chunk_no) for p in plans for c in p.chunks)
    expected = sorted((c.job_id, c.chunk_no) for j in jobs for c in split_into_chunks(j))
    assert planned == expected
    assert all(p.identity_count <= 10 for p in plans)


def test_each_product_gets_every_plan_under_its_own_task_id() -> None:
    [plan] = plan_tasks([job(1, 3)], PRODUCTS, 10, 10, NO_BYTE_LIMIT)
    assert sorted(plan.task_ids) == ["a", "b", "c"]
    assert len(set(plan.task_ids.values())) == 3


def test_a_round_sends_each_job_only_to_its_own_products_and_skips_removed_ones() -> None:
    jobs = [job(1, 1, products=("a", "b")), job(2, 1, products=("a", "gone")), job(3, 1, products=("gone",))]
    round_ = plan_round(jobs, ["a", "b"], 10, 10, NO_BYTE_LIMIT)
    sent = {(c.job_id, product) for plan in round_.plans for product in plan.task_ids for c in plan.chunks}
    assert sent == {(1, "a"), (1, "b"), (2, "a")}
    assert round_.skipped == {2: ("gone",), 3: ("gone",)}
    assert round_.ended_at_once == [3]
