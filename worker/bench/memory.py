"""Peak resident memory of the worker process, sampled from /proc while the bench runs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Peak of the largest worker process (the limit applies per process)."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self.peak_kib = max(self.peak_kib, _kib(pid, "VmRSS"), _kib(pid, "VmHWM"))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        """Stops sampling; returns the peak in MB."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        return round(self.peak_kib / 1024, 1)
