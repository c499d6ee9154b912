"""The bench runs end to end at a tiny size and reports every number (no timing thresholds:
speed is judged by running the bench, not by tests)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import pytest

from worker.amqp.topology import Topology
from worker.bench.cpu import BENCH_BACKEND
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

    assert "error" not in report, report["error"]
    assert report["ceiling"]["published_per_s"] > 0
    assert report["ceiling"]["consumed_per_s"] > 0
    assert report["ceiling"]["message_bytes"] > 200
    real = report["ceiling"]["real"]
    assert real["per_s"] == min(real["published_per_s"], real["consumed_per_s"]) > 0
    pipeline = report["pipeline"]
    assert (pipeline["completed"], pipeline["failed"]) == (300, 0)
    assert pipeline["completed_per_s"] > 0
    assert pipeline["ratio_to_ceiling"] == pytest.approx(
        pipeline["completed_per_s"] / report["ceiling"]["consumed_per_s"], abs=0.001
    )
    assert pipeline["ratio_to_real_ceiling"] == pytest.approx(pipeline["completed_per_s"] / real["per_s"], abs=0.001)
    assert 0 < pipeline["latency_p50_ms"] <= pipeline["latency_p99_ms"]
    # The CPU window ends once the run's lifecycle events are relayed, not at its last job.
    assert pipeline["events_relayed_after_s"] >= 0
    assert "its last events took to be relayed" in dict(measurements(report))["CPU per request"]
    cpu = pipeline["cpu_ms_per_request"]
    # Every process of the pipeline on this host: the one worker, its database's
    # backends, the broker and the bench's own producer each spent CPU on the requests.
    for group in ("worker run (every role)", "postgres (bench database)", "rabbitmq", "bench (producer + polling)"):
        assert cpu[group] > 0, group
    # The bench's own queries are shown apart and left out of the total.
    assert cpu[BENCH_BACKEND] >= 0
    assert cpu["total"] == pytest.approx(
        sum(ms for group, ms in cpu.items() if group not in ("total", BENCH_BACKEND)), abs=0.01
    )
    assert report["paced"]["completed"] == report["paced"]["requests"] > 0
    assert report["paced"]["target_rate_per_s"] == 200
    assert 0 < report["paced"]["published_per_s"] <= 200 * 1.1
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
    console = report["console_pages"]
    assert console["jobs_in_table"] >= 2_000
    assert set(console["pages"]) == {"overview", "jobs", "jobs, completed, page 40", "job", "new work order", "keys"}
    assert all(0 < page["p50_ms"] <= page["max_ms"] for page in console["pages"].values())
    assert all(page["first_ms"] <= page["max_ms"] for page in console["pages"].values())
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
    assert len(measurements(report)) == 16
    numbers, targets = render(report)
    assert targets.row_count == len(TARGETS)
    assert numbers.row_count == 16


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


@pytest.mark.parametrize(
    ("events", "audit"), [(False, True), (True, False), (True, True)], ids=["no-events", "no-audit", "both"]
)
async def test_a_bench_without_events_or_audit_has_those_triggers_off_and_the_rest_on(
    make_settings: Callable[..., Settings], tmp_path: Path, events: bool, audit: bool
) -> None:
    """`bench --no-events` / `--no-audit` measure what each guarantee costs: the same
    schema, only the triggers that write the event outbox or the audit entries disabled."""
    settings = make_settings("")
    async with bench_environment(settings, 1, tmp_path, events=events, audit=audit) as env:
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
    audit_triggers = {name for name in enabled if "audit" in name}
    assert len(event_triggers) == 3
    assert len(audit_triggers) == 3
    assert {enabled[name] for name in event_triggers} == {"O" if events else "D"}
    assert {enabled[name] for name in audit_triggers} == {"O" if audit else "D"}
    assert {state for name, state in enabled.items() if name not in event_triggers | audit_triggers} <= {"O"}


@pytest.mark.timeout(120)
async def test_a_bench_short_of_postgres_connections_ends_with_a_report_and_says_why(
    make_settings: Callable[..., Settings],
) -> None:
    """Seen: the bench exited 1 after 43 s with no report when the shared Postgres was
    short of connections. Here its role may hold four: enough to set up its database and
    start the worker, not for the worker's pools: the worker waits and retries, so it
    never consumes or the pipeline stalls, and the bench says so with the worker's own words."""
    base = make_settings("")
    role = f"dwshort_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(base.database_url)
    try:
        # Not a superuser: connection limits do not apply to superusers.
        await admin.execute(f"CREATE ROLE {role} LOGIN CREATEDB CONNECTION LIMIT 4")
        parts = urlsplit(base.database_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        short = base.model_copy(update={"database_url": urlunsplit(parts._replace(netloc=f"{role}@{host}"))})
        options = BenchOptions(requests=50, products=1, skip=frozenset({"ceiling", "workorder", "roles", "api"}))
        steps: list[int] = []
        report = await run_bench(short, options, steps.append)

        # Depending on how far the worker got before its pools ran dry: it never consumes
        # (setup times out), or consumes and finishes nothing (the pipeline stalls).
        step = report["error"]["step"]
        assert step in {"setup", "pipeline"}
        assert report["error"]["message"].startswith("Postgres is short of connections")
        assert "pipeline" not in report
        assert dict(measurements(report))["STOPPED"].startswith(f"in step {step}: Postgres is short")
        database = report["environment"]["database"]
        assert await admin.fetchval("SELECT datname FROM pg_database WHERE datname = $1", database) is None
    finally:
        await admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
