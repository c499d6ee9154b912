"""The bench runs end to end at a tiny size and reports every number (no timing thresholds:
speed is judged by running the bench, not by tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from worker.amqp.topology import Topology
from worker.bench.environment import bench_environment
from worker.bench.report import TARGETS, measurements, render, summary
from worker.bench.run import STEP_COUNT, BenchOptions, run_bench
from worker.settings import Settings


@pytest.mark.timeout(240)
async def test_tiny_bench_reports_every_number(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("")
    steps: list[int] = []
    options = BenchOptions(
        requests=300, identities=2_000, products=2, api_jobs=2_000, api_requests=100, paced_seconds=1.0, paced_rate=200,
        backlog=500, orders=2,
    )  # fmt: skip
    report = await run_bench(settings, options, steps.append)

    assert report["ceiling"]["published_per_s"] > 0
    assert report["ceiling"]["consumed_per_s"] > 0
    assert report["ceiling"]["message_bytes"] > 200
    pipeline = report["pipeline"]
    assert (pipeline["completed"], pipeline["failed"]) == (300, 0)
    assert pipeline["completed_per_s"] > 0
    assert pipeline["ratio_to_ceiling"] == pytest.approx(
        pipeline["completed_per_s"] / report["ceiling"]["consumed_per_s"], abs=0.001
    )
    assert 0 < pipeline["latency_p50_ms"] <= pipeline["latency_p99_ms"]
    assert report["paced"]["completed"] == report["paced"]["requests"] > 0
    assert 0 < report["paced"]["latency_p50_ms"] <= report["paced"]["latency_p99_ms"]
    assert report["workorder"]["status"] == "completed"
    assert report["workorder"]["products"] == {"p1": "success", "p2": "success"}
    assert 0 < report["workorder"]["accept_seconds"] <= report["workorder"]["complete_seconds"]
    for read in (
        report["api_single_job"],
        report["api_list_page"],
        report["api_deep_page"],
        report["api_small_org_workorders"],
    ):
        assert read["jobs_in_table"] >= 2_000
        assert read["requests"] == 100
        assert 0 < read["p50_ms"] <= read["p99_ms"]
        assert read["per_s"] > 0
    assert report["worker_peak_rss_mb"] > 10
    roles = report["roles"]
    assert (roles["backlog"], roles["orders"], roles["order_identities"]) == (500, 2, 2_000)
    assert 0 < roles["orders_accepted_seconds"] <= roles["orders_completed_seconds"]
    assert roles["backlog_drained_per_s"] > 0
    assert set(roles["peak_rss_mb"]) == {
        "intake", "dispatch", "acks", "maintenance", "reconciler", "events", "notify", "product:p1", "product:p2",
        "api",
    }  # fmt: skip
    assert all(mb > 10 for mb in roles["peak_rss_mb"].values())
    assert set(report["seconds"]) == {"ceiling", "setup", "pipeline", "paced", "workorder", "roles", "api", "total"}
    assert sum(steps) == STEP_COUNT

    assert all(value["value"] is not None for value in summary(report).values())
    assert len(measurements(report)) == 13
    numbers, targets = render(report)
    assert targets.row_count == len(TARGETS)
    assert numbers.row_count == 13


@pytest.mark.timeout(120)
async def test_skipped_steps_and_cleanup(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("")
    steps: list[int] = []
    options = BenchOptions(
        requests=50, identities=100, products=1, skip=frozenset({"ceiling", "pipeline", "roles", "api"})
    )
    report = await run_bench(settings, options, steps.append)

    assert "ceiling" not in report
    assert "pipeline" not in report
    assert report["workorder"]["status"] == "completed"
    assert sum(steps) == STEP_COUNT
    admin = await asyncpg.connect(settings.database_url)
    try:
        database = await admin.fetchval(
            "SELECT datname FROM pg_database WHERE datname = $1", report["environment"]["database"]
        )
    finally:
        await admin.close()
    assert database is None
    prefix = report["environment"]["topology_prefix"]
    topology = Topology.for_settings(settings.model_copy(update={"topology_prefix": prefix}), ["p1"])
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        for name in topology.all_queue_names():
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelClosed):
                await channel.declare_queue(name, passive=True)
    finally:
        await connection.close()


async def test_a_bench_without_events_has_its_event_triggers_off(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """`bench --no-events` measures the pipeline as it was before lifecycle events: the
    same schema, the triggers that write the event outbox disabled."""
    settings = make_settings("")
    for events, expected in ((False, "D"), (True, "O")):
        async with bench_environment(settings, 1, tmp_path, events=events) as env:
            connection = await asyncpg.connect(env.database_url)
            try:
                states = await connection.fetch(
                    "SELECT tgname, tgenabled::text AS tgenabled FROM pg_trigger WHERE NOT tgisinternal"
                    " AND tgrelid IN ('jobs'::regclass, 'product_status'::regclass)"
                )
            finally:
                await connection.close()
        enabled = {row["tgname"]: row["tgenabled"] for row in states}
        event_triggers = {name for name in enabled if "lifecycle_events" in name}
        assert len(event_triggers) == 3
        assert {enabled[name] for name in event_triggers} == {expected}
        assert {state for name, state in enabled.items() if name not in event_triggers} == {"O"}  # the audit trail's
