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
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.peak_kib = max(self.peak_kib, _kib(self.pid, "VmRSS"), _kib(self.pid, "VmHWM"))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        """Stops sampling; returns the peak in MB."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.peak_kib = max(self.peak_kib, _kib(self.pid, "VmHWM"))
        return round(self.peak_kib / 1024, 1)
