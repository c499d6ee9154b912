"""The bench's numbers next to the targets they must reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.table import Table


@dataclass(frozen=True)
class Target:
    label: str
    value: Callable[[dict[str, Any]], float | None]
    unit: str
    limit: float
    higher_is_better: bool

    def check(self, report: dict[str, Any]) -> tuple[float | None, bool | None]:
        try:
            value = self.value(report)
        except (KeyError, TypeError):
            return None, None
        if value is None:
            return None, None
        return value, value >= self.limit if self.higher_is_better else value < self.limit


TARGETS = [
    Target("pipeline / real ceiling", lambda r: r["pipeline"]["ratio_to_real_ceiling"], "", 0.5, True),
    Target("CPU per request, all processes", lambda r: r["pipeline"]["cpu_ms_per_request"]["total"], "ms", 0.3, False),
    Target("paced p99 latency", lambda r: r["paced"]["latency_p99_ms"], "ms", 1000, False),
    Target("work order accepted", lambda r: r["workorder"]["accept_seconds"], "s", 1.0, False),
    Target("work order completed", lambda r: r["workorder"]["complete_seconds"], "s", 5.0, False),
    Target("API single job p99", lambda r: r["api_single_job"]["p99_ms"], "ms", 20, False),
    Target("API list page p99", lambda r: r["api_list_page"]["p99_ms"], "ms", 30, False),
    Target("API deep page p99", lambda r: r["api_deep_page"]["p99_ms"], "ms", 100, False),
    Target("small org work orders p99", lambda r: r["api_small_org_workorders"]["p99_ms"], "ms", 30, False),
    Target(
        "console slowest page, cold",
        lambda r: max(page["max_ms"] for page in r["console_pages"]["pages"].values()),
        "ms",
        200,
        False,
    ),
    Target("worker peak RSS", lambda r: r["worker_peak_rss_mb"], "MB", 250, False),
    Target("largest role peak RSS (roles step)", lambda r: max(r["roles"]["peak_rss_mb"].values()), "MB", 250, False),
]


def measurements(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if "ceiling" in report:
        rows.extend(_ceiling_rows(report["ceiling"]))
    if "pipeline" in report:
        p = report["pipeline"]
        rows.append(
            ("pipeline", f"{p['completed']}/{p['requests']} completed{_failed(p)} in {p['seconds']} s = "
                         f"{p['completed_per_s']} req/s{_ratio(p)}; "
                         f"latency p50 {p['latency_p50_ms']} ms, p99 {p['latency_p99_ms']} ms")
        )  # fmt: skip
        if "cpu_ms_per_request" in p:
            rows.append(("CPU per request", _cpu(p["cpu_ms_per_request"], p.get("events_relayed_after_s"))))
    if "paced" in report:
        rows.append(("paced", _paced(report["paced"])))
    if "workorder" in report:
        w = report["workorder"]
        rows.append(
            ("work order", f"{w['identities']} identities: accepted in {w['accept_seconds']} s, "
                           f"{w['status']} after {w['complete_seconds']} s")
        )  # fmt: skip
    for key, label in (
        ("api_single_job", "GET job"),
        ("api_list_page", "GET jobs page"),
        ("api_deep_page", "GET deep page (offset 80-100k, or after)"),
        ("api_small_org_workorders", "GET /workorder, 1-job org"),
    ):
        if key in report:
            a = report[key]
            rows.append(
                (label, f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, {a['per_s']} req/s, "
                        f"{a['clients']} clients, {a['jobs_in_table']} jobs in the table")
            )  # fmt: skip
    if "console_pages" in report:
        c = report["console_pages"]
        pages = ", ".join(f"{name} {page['p50_ms']} ms (first {page['first_ms']})" for name, page in c["pages"].items())
        catch_up = f"; overview summary caught up in {c['summary_catch_up_s']} s" if "summary_catch_up_s" in c else ""
        rows.append(("console pages, server p50", f"{pages}; {c['jobs_in_table']} jobs in the table{catch_up}"))
    if "worker_peak_rss_mb" in report:
        rows.append(("worker RSS", f"{report['worker_peak_rss_mb']} MB peak"))
    if "roles" in report:
        rows.extend(_roles_rows(report["roles"]))
    if "error" in report:
        rows.append(("STOPPED", f"in step {report['error']['step']}: {report['error']['message']}"))
    if "seconds" in report:
        rows.append(("bench time", ", ".join(f"{step} {s} s" for step, s in report["seconds"].items())))
    return rows


def _ceiling_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rows.append(
        ("ceiling, plain aio-pika", f"{c['published_per_s']} msg/s published, {c['consumed_per_s']} msg/s "
                                   f"consumed ({c['message_bytes']} B messages)")
    )  # fmt: skip
    if "real" in c:
        real = c["real"]
        rows.append(
            ("ceiling, real", f"{real['published_per_s']} msg/s published (batched, many confirms outstanding), "
                              f"{real['consumed_per_s']} msg/s consumed (multiple acks) = {real['per_s']} msg/s")
        )  # fmt: skip
    return rows


def _roles_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rows.append(
        ("roles: backlog", f"{r['backlog']} requests built without acks in {r['backlog_built_seconds']} s, "
                           f"drained in {r['backlog_drained_seconds']} s = {r['backlog_drained_per_s']} req/s")
    )  # fmt: skip
    rows.append(
        ("roles: work orders", f"{r['orders']} x {r['order_identities']} identities at once: all accepted in "
                               f"{r['orders_accepted_seconds']} s, completed in {r['orders_completed_seconds']} s")
    )  # fmt: skip
    rows.append(("roles: peak RSS", ", ".join(f"{role} {mb} MB" for role, mb in r["peak_rss_mb"].items())))
    return rows


def _failed(step: dict[str, Any]) -> str:
    return f" ({step['failed']} failed)" if step.get("failed") else ""


def _ratio(step: dict[str, Any]) -> str:
    if "ratio_to_ceiling" not in step:
        return ""
    return f" = {step['ratio_to_real_ceiling']} x real ceiling ({step['ratio_to_ceiling']} x plain aio-pika's)"


def _cpu(per_request: dict[str, float], events_after: float | None) -> str:
    parts = [f"{group} {ms:g}" for group, ms in per_request.items() if group != "total"]
    window = "over the pipeline run" + (
        f" and the {events_after:g} s its last events took to be relayed" if events_after is not None else ""
    )
    return f"{per_request['total']:g} ms in all: " + ", ".join(parts) + f" (ms, {window})"


def _paced(p: dict[str, Any]) -> str:
    """Achieved rates, never the target in their place; and says when the run fell behind."""
    verdict = "kept up" if p["kept_up"] else "COULD NOT KEEP UP"
    return (
        f"target {p['target_rate_per_s']} req/s: published {p['requests']} at {p['published_per_s']} req/s, "
        f"{p['completed']} completed{_failed(p)} at {p['completed_per_s']} req/s; backlog grew "
        f"{p['backlog_growth_per_s']} req/s ({p['backlog_at_publish_end']} when publishing stopped): {verdict}; "
        f"p50 {p['latency_p50_ms']} ms, p99 {p['latency_p99_ms']} ms"
    )


def render(report: dict[str, Any]) -> tuple[Table, Table]:
    numbers = Table("step", "measured", title="deletion-worker bench")
    for step, text in measurements(report):
        numbers.add_row(step, text)
    targets = Table("target", "value", "limit", "")
    for target in TARGETS:
        value, ok = target.check(report)
        mark = "-" if ok is None else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")
        limit = f"{'≥' if target.higher_is_better else '<'} {target.limit:g} {target.unit}"
        targets.add_row(target.label, "-" if value is None else f"{value:g} {target.unit}", limit, mark)
    return numbers, targets


def summary(report: dict[str, Any]) -> dict[str, Any]:
    return {t.label: {"value": t.check(report)[0], "pass": t.check(report)[1]} for t in TARGETS}
