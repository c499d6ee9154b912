"""Builds the handler of each built-in product from the products file."""

from __future__ import annotations

from worker.handlers.base import Handler
from worker.handlers.http import HttpHandler
from worker.handlers.postgres import PostgresHandler
from worker.products import ExternalProduct, HttpProduct, PostgresProduct, ProductsFile, check_transport
from worker.settings import Settings


def build_handler(products: ProductsFile, name: str, settings: Settings) -> Handler:
    check_transport(products, settings.allow_insecure_http)
    config = products.products[name]
    if isinstance(config, PostgresProduct):
        return PostgresHandler(
            dsn=config.dsn or settings.database_url,
            statements=config.statements,
            statements_by_namespace=config.statements_by_namespace,
            namespaces=config.namespaces,
            max_connections=settings.handler_concurrency,
            count_statements=config.count_statements,
            count_statements_by_namespace=config.count_statements_by_namespace,
        )
    if isinstance(config, HttpProduct):
        return HttpHandler(
            url=str(config.url),
            secret=config.secret.get_secret_value(),
            key_id=config.key_id,
            timeout=config.timeout,
            namespaces=config.namespaces,
        )
    assert isinstance(config, ExternalProduct)
    raise ValueError(f"product {name!r} is external: its own service consumes its queue")
