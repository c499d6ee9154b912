"""The products file (TOML): which downstream products exist and how each is reached."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, ValidationError

ProductName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class _Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # How the work-order API names the product in productStatusDetails; defaults to the key.
    display_name: str | None = None
    # Identities of other namespaces are skipped by built-in handlers; None = all namespaces.
    namespaces: list[str] | None = None


class PostgresProduct(_Product):
    handler: Literal["postgres"]
    dsn: str | None = None  # defaults to DELETION_DATABASE_URL
    statements: list[str] = Field(min_length=1)


class HttpProduct(_Product):
    handler: Literal["http"]
    url: HttpUrl
    secret: SecretStr | None = None
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


class ProductsFileError(Exception):
    pass


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
