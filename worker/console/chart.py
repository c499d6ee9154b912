"""A bar chart of requests received and completed per day, as SVG elements drawn by the
template: no script and no inline style (the CSP allows neither)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 560
HEIGHT = 160
AXIS = 20  # room for the day labels under the bars


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # received | completed
    label: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    labels: list[tuple[float, str]]
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def day_chart(per_day: list[tuple[str, int, int]]) -> Chart:
    peak = max([1, *(max(received, completed) for _, received, completed in per_day)])
    slot = WIDTH / max(1, len(per_day))
    usable = HEIGHT - AXIS
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for index, (day, received, completed) in enumerate(per_day):
        left = index * slot + slot * 0.1
        for offset, (kind, value) in enumerate((("received", received), ("completed", completed))):
            height = usable * value / peak
            bars.append(
                Bar(left + offset * slot * 0.4, usable - height, slot * 0.38, height, kind, f"{day}: {value} {kind}")
            )
        labels.append((index * slot + slot / 2, day[5:]))
    return Chart(bars, labels, peak)
