"""Builds the handler of each built-in product from the products file."""

from __future__ import annotations

from worker.handlers.base import Handler
from worker.handlers.http import HttpHandler
from worker.handlers.postgres import PostgresHandler
from worker.products import ExternalProduct, HttpProduct, PostgresProduct, ProductsFile
from worker.settings import Settings


def build_handler(products: ProductsFile, name: str, settings: Settings) -> Handler:
    config = products.products[name]
    if isinstance(config, PostgresProduct):
        return PostgresHandler(
            dsn=config.dsn or settings.database_url,
            statements=config.statements,
            namespaces=config.namespaces,
            max_connections=settings.handler_concurrency,
        )
    if isinstance(config, HttpProduct):
        return HttpHandler(
            url=str(config.url),
            secret=config.secret.get_secret_value() if config.secret is not None else None,
            timeout=config.timeout,
            namespaces=config.namespaces,
        )
    assert isinstance(config, ExternalProduct)
    raise ValueError(f"product {name!r} is external: its own service consumes its queue")
