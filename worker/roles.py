"""The roles a worker process can run, and how `--role` names them.

`deletion-worker run` with no role runs all of them in one process; each can also
run alone (and as many copies as wanted) to scale it as its own container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RoleKind = Literal["intake", "dispatch", "product", "acks"]
SIMPLE_ROLES: tuple[RoleKind, ...] = ("intake", "dispatch", "acks")


@dataclass(frozen=True)
class Role:
    kind: RoleKind
    product: str | None = None

    def __str__(self) -> str:
        return f"product:{self.product}" if self.kind == "product" else self.kind


class UnknownRoleError(ValueError):
    pass


def parse_role(text: str, products: list[str]) -> Role:
    """Parse `intake`, `dispatch`, `acks` or `product:<name>` (name from the products file)."""
    for kind in SIMPLE_ROLES:
        if text == kind:
            return Role(kind=kind)
    if text.startswith("product:"):
        name = text.removeprefix("product:")
        if name in products:
            return Role(kind="product", product=name)
        raise UnknownRoleError(f"unknown product {name!r}; configured products: {', '.join(products) or 'none'}")
    raise UnknownRoleError(f"unknown role {text!r}; expected intake, dispatch, acks or product:<name>")


def all_roles(products: list[str]) -> list[Role]:
    """Every role, in start order: consumers of later stages first so nothing waits on them."""
    return [Role("acks"), *(Role("product", p) for p in products), Role("dispatch"), Role("intake")]
