"""The bench runs end to end at a tiny size and reports every number (no timing thresholds:
speed is judged by running the bench, not by tests)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from worker.bench.report import TARGETS, measurements, render, summary
from worker.bench.run import BenchOptions, run_bench
from worker.settings import Settings


@pytest.mark.timeout(240)
async def test_tiny_bench_reports_every_number(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings("")
    steps: list[int] = []
    options = BenchOptions(
        requests=300, identities=2_000, products=2, api_jobs=2_000, api_requests=100, paced_seconds=1.0, paced_rate=200
    )
    report = await run_bench(settings, options, steps.append)
    assert report["ceiling"]["consumed_per_s"] > 0
    assert report["ceiling"]["message_bytes"] > 200
    assert report["pipeline"]["completed"] == 300
    assert report["pipeline"]["ratio_to_ceiling"] == pytest.approx(
        report["pipeline"]["completed_per_s"] / report["ceiling"]["consumed_per_s"], abs=0.001
    )
    assert 0 < report["pipeline"]["latency_p50_ms"] <= report["pipeline"]["latency_p99_ms"]
    assert report["paced"]["completed"] == report["paced"]["requests"] > 0
    assert report["workorder"]["status"] == "completed"
    assert set(report["workorder"]["products"].values()) == {"success"}
    assert report["api_single_job"]["jobs_in_table"] >= 2_000
    assert report["api_list_page"]["requests"] == 100
    assert report["worker_peak_rss_mb"] > 10
    assert sum(steps) == 6
    assert all(value["value"] is not None for value in summary(report).values())
    assert len(measurements(report)) == 7
    numbers, targets = render(report)
    assert targets.row_count == len(TARGETS)
    assert numbers.row_count == 7
