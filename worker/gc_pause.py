"""Pausing the cyclic garbage collector while a large batch of objects is built.

Allocating hundreds of thousands of dicts, lists or tuples in one go (a 100,000-identity
work order, the rows for its COPY) sets off the collector again and again, and its full
passes walk the whole heap: in the API process that was about half the time a large
work order took to be accepted. What is built in such a burst cannot form reference
cycles, so nothing is lost by not collecting meanwhile; reference counting still frees
everything that is dropped.

Pause only around synchronous work: a pause held across an await stops collection for
every other task of the process as long as that await takes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_pauses = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees what it can).

    Nests (also between tasks): the collector comes back when the last pause ends, and
    only if it was on when the first began."""
    global _pauses  # noqa: PLW0603 - one collector per process, one count of who paused it
    if _pauses == 0 and not gc.isenabled():
        yield  # someone else turned it off: theirs to turn back on
        return
    _pauses += 1
    gc.disable()
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()
