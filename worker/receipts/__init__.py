"""Signed deletion receipts: the canonical bytes that are signed, Ed25519 keys, and the
checks a holder of a receipt makes offline (worker.store.receipts issues them)."""
