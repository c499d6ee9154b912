"""Fault-injection tests: kill -9 of worker processes, broker and database restarts.

Marked `faults` and left out of the default run; run them with
`deploy/dev.sh test -m faults` (about two minutes). Restarts use a private RabbitMQ
node and a private Postgres cluster that the tests start and stop themselves, so the
machine's shared services are never touched.
"""
