"""OpenDSR 2.0 (formerly OpenGDPR) without the store: how its requests map onto jobs
(`protocol`) and how responses and status callbacks are signed and checked (`signing`).

The routes are worker.api.routes_opendsr; the table is worker.store.opendsr."""
