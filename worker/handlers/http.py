"""Built-in `http` handler: POSTs the product task as JSON to the product's URL.

Every call is signed (worker.signing: a timestamp and key id inside an HMAC-SHA256 over
`timestamp.body`); the product checks it with `worker.signing.verify`. 2xx means every
item succeeded, unless the JSON answer carries `results` in the acknowledgement's form;
4xx (but 408, 425 and 429) fails the items for good; 5xx, 408, 425, 429, time-outs and
connection errors are transient and retried with backoff.
"""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from schemas import ProductAck, ProductTask
from worker.errors import PermanentError, TransientError
from worker.handlers.base import SUCCESS, Handler, ItemResult
from worker.signing import signed_headers

RETRYABLE_4XX = frozenset({408, 425, 429})


class HttpHandler(Handler):
    def __init__(self, url: str, secret: str, key_id: str, timeout: float, namespaces: list[str] | None) -> None:
        super().__init__(namespaces)
        self.url = url
        self.secret = secret.encode()
        self.key_id = key_id
        self._client = httpx.AsyncClient(timeout=timeout)

    async def run(self, task: ProductTask) -> dict[int, ItemResult]:
        if self.namespaces is not None:
            task = task.model_copy(
                update={
                    "items": [
                        {**item, "identities": [i for i in item["identities"] if self.wanted(i)]} for item in task.items
                    ]
                }
            )
        body = task.model_dump_json(by_alias=True, exclude=None if task.dry_run else {"dry_run"}).encode()
        headers = {"Content-Type": "application/json", **signed_headers(self.key_id, self.secret, body)}
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as error:
            raise TransientError("http: request timed out") from error
        except httpx.TransportError as error:
            raise TransientError(f"http: {type(error).__name__}") from error
        status = response.status_code
        if status >= 500 or status in RETRYABLE_4XX:
            raise TransientError(f"http: answered {status}")
        if status >= 400:
            raise PermanentError(f"http: answered {status}")
        if status >= 300:
            raise PermanentError(f"http: unexpected redirect {status}")
        return self._results(task, response)

    @staticmethod
    def _results(task: ProductTask, response: httpx.Response) -> dict[int, ItemResult]:
        results = {item["jobId"]: SUCCESS for item in task.items}
        if not response.content:
            return results
        try:
            payload = response.json()
        except ValueError:
            return results
        if not isinstance(payload, dict) or "results" not in payload:
            return results
        try:
            ack = ProductAck.model_validate({"taskId": task.task_id, "product": task.product, **payload})
        except ValidationError as error:
            raise PermanentError("http: answer has malformed `results`") from error
        for result in ack.results:
            if result["jobId"] not in results:
                continue
            failed = result["status"] == "failed"
            results[result["jobId"]] = ItemResult(
                "failed" if failed else "success",
                (result.get("error") or "failed")[:500] if failed else None,
                deleted=result.get("deleted"),
                not_found=result.get("notFound"),
                failed_identities=tuple(result.get("failedIdentities") or ()) if failed else (),
            )
        return results

    async def close(self) -> None:
        await self._client.aclose()
