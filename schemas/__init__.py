"""The contract: pydantic models of every message and API body.

`schemas/json/*.schema.json` are exported from these models (`python -m schemas.export`)
for producers and consumers written in other languages.
"""

from schemas.messages import (
    MAX_IDENTITIES,
    AckResult,
    DeletionRequest,
    FailedIdentity,
    Identity,
    Namespace,
    ProductAck,
    ProductTask,
    TaskItem,
)

__all__ = [
    "MAX_IDENTITIES",
    "AckResult",
    "DeletionRequest",
    "FailedIdentity",
    "Identity",
    "Namespace",
    "ProductAck",
    "ProductTask",
    "TaskItem",
]
