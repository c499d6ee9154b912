"""`limit` and `page` as the seeds define them: out-of-range or non-numeric values fall
back to the defaults instead of failing the request. `after` (an id of the last item
seen) pages on at any depth; offsets are served up to MAX_OFFSET rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query

from worker.api.errors import ApiError
from worker.store.reads import MAX_OFFSET, PageRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_AFTER = 200  # longer than any id or cursor a list hands out


@dataclass(frozen=True)
class Paging:
    limit: int
    page: int
    after: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def request(self, after_id: int | None = None) -> PageRequest:
        if self.offset > MAX_OFFSET:
            raise ApiError(400, f"pages deeper than {MAX_OFFSET} items: pass `after` (the last id seen) instead")
        return PageRequest(self.limit, self.offset, after_id)


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def paging(
    limit: Annotated[str | None, Query(description="Page size 1-200 (default 50); anything else means 50.")] = None,
    page: Annotated[str | None, Query(description="Page number from 1 (default 1); below 1 means 1.")] = None,
    after: Annotated[
        str | None, Query(description="Only items older than this one (its id): the next page, at any depth.")
    ] = None,
) -> Paging:
    if after is not None and ("\x00" in after or len(after) > MAX_AFTER):
        # Never an id; Postgres refuses a NUL in text, which would answer 500.
        raise ApiError(400, "after: not an id of this list")
    size = _as_int(limit)
    number = _as_int(page)
    return Paging(
        limit=size if size is not None and 1 <= size <= MAX_LIMIT else DEFAULT_LIMIT,
        page=min(number, 10_000_000) if number is not None and number >= 1 else 1,
        after=after or None,
    )
