"""Progress bars for long operations, shown only on a terminal (logs and pipes stay clean)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

Advance = Callable[[int], None]


@contextmanager
def progress(total: int | None, description: str) -> Iterator[Advance]:
    """Yields `advance(n)`; a no-op when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
