"""Webhooks without the database: the signature scheme, the URL guard, sealed secrets and
the HTTP sender. worker.roles.notify puts them together with worker.store.webhooks."""
