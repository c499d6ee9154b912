"""The product SDK: an external product in one async function.

    from worker.sdk import Item, ProductWorker, Result, TransientError

    async def handle(items: list[Item]) -> list[Result]:
        results = []
        for item in items:
            try:
                deleted = await crm.delete_contacts(item.values("email"))
            except crm.Unavailable as error:
                raise TransientError("crm unavailable") from error  # the batch is retried later
            results.append(item.succeeded(deleted=deleted))
        return results

    ProductWorker("amqp://guest:guest@127.0.0.1:5672/", "crm", handle).run()

`handle` gets the items of one or more tasks and returns one Result per item, in order.
Raise TransientError (or take longer than the timeout) to have the batch retried with
backoff; raise PermanentError to acknowledge every item as failed with its message. The
README's "Writing a product" has the guarantees and the retry rules.
"""

from worker.errors import PermanentError, TransientError
from worker.sdk.model import Identity, IdentityFailure, Item, Result
from worker.sdk.session import Counts, Handle
from worker.sdk.worker import Options, ProductWorker

__all__ = [
    "Counts",
    "Handle",
    "Identity",
    "IdentityFailure",
    "Item",
    "Options",
    "PermanentError",
    "ProductWorker",
    "Result",
    "TransientError",
]
