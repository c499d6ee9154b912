"""Named process exit codes (sysexits-style where one fits)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # generic: the command ran and failed
    USAGE = 2  # bad command-line arguments (click's own code)
    NOT_FOUND = 3  # the job, key or queue named does not exist
    REFUSED = 4  # the operation is not allowed in the current state (e.g. cancel a completed job)
    UNHEALTHY = 5  # `health`: the checked process is not connected or not consuming
    INVALID = 6  # a proof does not hold: an audit chain broken, a receipt's signature or identity check failed
    CONFIG = 78  # EX_CONFIG: a setting or the products file is wrong
    UNAVAILABLE = 69  # EX_UNAVAILABLE: RabbitMQ or Postgres cannot be reached
