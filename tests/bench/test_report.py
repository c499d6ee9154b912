"""The paced line says what the run achieved, and when it fell behind its target."""

from __future__ import annotations

from dataclasses import asdict

from worker.bench.pipeline import Backlog, PipelineResult, _paced
from worker.bench.report import measurements


def _result(requests: int, completed: int, seconds: float) -> PipelineResult:
    return PipelineResult(requests, completed, 0, seconds, round(completed / seconds, 1), 40.0, 900.0)


def _paced_line(paced: dict[str, object]) -> str:
    return dict(measurements({"paced": paced}))["paced"]


def test_a_paced_run_that_fell_behind_reports_its_achieved_rate_and_says_so() -> None:
    # Seen on a busy host: target 2,545 req/s, 1,594 achieved over 8 s, the backlog growing.
    paced = _paced(_result(12_752, 12_752, 8.0), 2545.0, Backlog(4.0, 1_500), Backlog(8.0, 3_000))
    line = _paced_line(asdict(paced))

    assert paced.published_per_s == 1594.0
    assert paced.backlog_growth_per_s == 375.0
    assert not paced.kept_up
    assert "published 12752 at 1594.0 req/s" in line
    assert "completed at 1594.0 req/s" in line
    assert "backlog grew 375.0 req/s" in line
    assert "COULD NOT KEEP UP" in line


def test_a_paced_run_publishing_at_its_target_with_a_steady_backlog_kept_up() -> None:
    paced = _paced(_result(8_000, 8_000, 8.05), 1000.0, Backlog(4.0, 55), Backlog(8.0, 60))

    assert paced.kept_up
    assert paced.published_per_s == 1000.0
    assert "kept up" in _paced_line(asdict(paced))


def test_a_paced_run_that_published_at_its_target_but_left_a_growing_backlog_did_not_keep_up() -> None:
    paced = _paced(_result(8_000, 8_000, 14.0), 1000.0, Backlog(4.0, 2_000), Backlog(8.0, 4_000))

    assert not paced.kept_up
    assert "COULD NOT KEEP UP" in _paced_line(asdict(paced))


def test_the_steady_backlog_of_a_pipeline_with_latency_is_not_growth() -> None:
    """At 1,000 req/s and 0.6 s of latency, 600 requests are always in flight. Counted from
    zero that read as 75 req/s of growth, over the 5 % allowed: a run that kept up was
    reported as COULD NOT KEEP UP. Growth is now what the second half of the run added."""
    paced = _paced(_result(8_000, 8_000, 8.6), 1000.0, Backlog(4.0, 600), Backlog(8.0, 610))

    assert paced.backlog_growth_per_s == 2.5
    assert paced.backlog_at_publish_end == 610
    assert paced.kept_up
