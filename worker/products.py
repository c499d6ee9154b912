"""The products file (TOML): which downstream products exist and how each is reached."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, ValidationError, model_validator

from worker.errors import ConfigError

ProductName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class _Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # How the work-order API names the product in productStatusDetails; defaults to the key.
    display_name: str | None = None
    # Identities of other namespaces are skipped by built-in handlers; None = all namespaces.
    namespaces: list[str] | None = None


NAMESPACE_PARAMETER = re.compile(r"\$2(?!\d)")


def uses_namespace(statement: str) -> bool:
    """Whether a statement takes the namespace code as `$2`."""
    return NAMESPACE_PARAMETER.search(statement) is not None


class PostgresProduct(_Product):
    """Statements run once per namespace found in a chunk, never with the values of two
    namespaces at once (an email `42` must not delete userId `42`): `$1` is the array of
    that namespace's values and `$2`, where a statement uses it, the namespace code.
    `statements` run for each namespace of `namespaces` (all namespaces when unset, which
    only statements that use `$2` may do); `statements_by_namespace` name their own."""

    handler: Literal["postgres"]
    dsn: str | None = None  # defaults to DELETION_DATABASE_URL
    statements: list[str] = Field(default_factory=list)
    statements_by_namespace: dict[str, list[str]] = Field(default_factory=dict)
    # Dry runs: queries that return how many rows the statements would delete (one
    # number each, e.g. `SELECT count(*) ... WHERE user_id = ANY($1)`), taking $1 and $2
    # like the statements. Without them a dry run of this product counts nothing.
    count_statements: list[str] = Field(default_factory=list)
    count_statements_by_namespace: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _namespaced(self) -> PostgresProduct:
        if not self.statements and not any(self.statements_by_namespace.values()):
            raise ValueError("give `statements` or `statements_by_namespace`")
        if self.namespaces is None and not all(uses_namespace(s) for s in [*self.statements, *self.count_statements]):
            raise ValueError(
                "a statement without $2 would receive the values of every namespace alike (an email 42 would"
                " delete userId 42): set `namespaces`, use $2 (the namespace code), or `statements_by_namespace`"
            )
        return self


class HttpProduct(_Product):
    handler: Literal["http"]
    url: HttpUrl  # https, unless DELETION_ALLOW_INSECURE_HTTP (tests and local setups)
    secret: SecretStr  # signs every call (worker.signing); the product verifies it
    key_id: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]{1,64}$")  # names the secret, for rotations
    timeout: float = Field(default=10.0, gt=0)


class ExternalProduct(_Product):
    handler: Literal["external"]


ProductConfig = Annotated[PostgresProduct | HttpProduct | ExternalProduct, Field(discriminator="handler")]


class ProductsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    products: dict[ProductName, ProductConfig] = Field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.products)

    def display_names(self) -> dict[str, str]:
        return {name: config.display_name or name for name, config in self.products.items()}

    def built_in(self) -> list[str]:
        """Products whose handler runs inside the worker (everything but `external`)."""
        return [name for name, config in self.products.items() if config.handler != "external"]


class ProductsFileError(ConfigError):
    pass


def check_transport(products: ProductsFile, allow_insecure_http: bool) -> None:
    """http products must be called over https unless the deployment allows plain http."""
    for name, config in products.products.items():
        if isinstance(config, HttpProduct) and config.url.scheme != "https" and not allow_insecure_http:
            raise ProductsFileError(
                f"products.{name}.url: http:// sends identity values unencrypted; use https"
                " (or set DELETION_ALLOW_INSECURE_HTTP=true for a local setup)"
            )


def load_products(path: Path) -> ProductsFile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProductsFileError(f"products file {path} does not exist (DELETION_PRODUCTS_FILE)") from None
    except tomllib.TOMLDecodeError as error:
        raise ProductsFileError(f"products file {path} is not valid TOML: {error}") from None
    try:
        return ProductsFile.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ProductsFileError(f"products file {path}: {where}: {first['msg']}") from None
