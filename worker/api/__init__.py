"""The HTTP API: the Jobs API and the work-order API of the seed documents."""
