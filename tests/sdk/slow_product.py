"""A product program for the SIGTERM test: `handle` says so on stdout, then takes a while."""

from __future__ import annotations

import asyncio
import os

from worker.sdk import Item, Options, ProductWorker, Result


async def handle(items: list[Item]) -> list[Result]:
    print("handling", flush=True)  # noqa: T201 - the test waits for this line
    await asyncio.sleep(float(os.environ["HANDLE_SECONDS"]))
    return [item.succeeded() for item in items]


if __name__ == "__main__":
    options = Options(retry_base_ms=int(os.environ["RETRY_BASE_MS"]), retry_cap_ms=int(os.environ["RETRY_CAP_MS"]))
    ProductWorker(os.environ["AMQP_URL"], "crm", handle, prefix=os.environ["PREFIX"], options=options).run()
