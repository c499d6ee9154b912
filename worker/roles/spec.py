"""The roles a worker process can run, and how `--role` names them (RoleSpec).

`deletion-worker run` with no role runs all of them in one process; each can also
run alone (and as many copies as wanted) to scale it as its own container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.errors import UsageError

RoleKind = Literal["intake", "dispatch", "product", "acks", "maintenance", "reconciler", "events", "notify"]
SIMPLE_ROLES: tuple[RoleKind, ...] = ("intake", "dispatch", "acks", "maintenance", "reconciler", "events", "notify")


@dataclass(frozen=True)
class RoleSpec:
    kind: RoleKind
    product: str | None = None

    def __str__(self) -> str:
        return f"product:{self.product}" if self.kind == "product" else self.kind


class UnknownRoleError(UsageError):
    pass


def parse_role(text: str, products: list[str]) -> RoleSpec:
    """Parse `intake`, `dispatch`, `acks`, `maintenance`, `reconciler`, `events`, `notify` or
    `product:<name>` (a name from the products file)."""
    for kind in SIMPLE_ROLES:
        if text == kind:
            return RoleSpec(kind=kind)
    if text.startswith("product:"):
        name = text.removeprefix("product:")
        if name in products:
            return RoleSpec(kind="product", product=name)
        raise UnknownRoleError(f"unknown product {name!r}; configured products: {', '.join(products) or 'none'}")
    raise UnknownRoleError(f"unknown role {text!r}; expected {', '.join(SIMPLE_ROLES)} or product:<name>")


def all_roles(products: list[str]) -> list[RoleSpec]:
    """Every role, in start order: consumers of later stages first so nothing waits on them."""
    return [
        RoleSpec("acks"),
        *(RoleSpec("product", p) for p in products),
        RoleSpec("dispatch"),
        RoleSpec("maintenance"),
        RoleSpec("reconciler"),
        RoleSpec("events"),
        RoleSpec("notify"),
        RoleSpec("intake"),
    ]
