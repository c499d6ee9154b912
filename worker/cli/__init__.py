"""`deletion-worker`: one console script; every command is registered here, by name."""

from __future__ import annotations

import sys
from typing import Any

import click

from worker.cli import (
    api,
    audit,
    bench,
    dlq,
    health,
    job_results,
    jobs,
    keys,
    projects,
    queues,
    receipts,
    service,
    webhooks,
)
from worker.cli.common import CliError
from worker.errors import ConfigError, DeletionWorkerError, NotFoundError, RefusedError, UnavailableError, UsageError
from worker.ops.exitcodes import ExitCode


class Commands(click.Group):
    """Ends any command that raised one of the service's errors with its exit code (EXIT_CODES)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeletionWorkerError as error:
            raise CliError(str(error), exit_code_of(error)) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Carries out user-data deletion requests across downstream products."""


cli.add_command(service.migrate)
cli.add_command(service.run_command)
cli.add_command(service.up)
cli.add_command(service.demo_command)
cli.add_command(service.publish)
cli.add_command(api.api_command)
cli.add_command(jobs.jobs_group)
jobs.jobs_group.add_command(job_results.identities_command)
jobs.jobs_group.add_command(job_results.retry_command)
jobs.jobs_group.add_command(audit.audit_command)
cli.add_command(receipts.receipts_group)
cli.add_command(keys.keys_group)
cli.add_command(projects.projects_group)
cli.add_command(queues.queues_command)
cli.add_command(dlq.dlq_group)
cli.add_command(webhooks.webhooks_group)
cli.add_command(health.health_command)
cli.add_command(bench.bench_command)

# The exit code of each kind of error a command may end with (most specific first).
EXIT_CODES: tuple[tuple[type[DeletionWorkerError], ExitCode], ...] = (
    (ConfigError, ExitCode.CONFIG),
    (UsageError, ExitCode.USAGE),
    (NotFoundError, ExitCode.NOT_FOUND),
    (RefusedError, ExitCode.REFUSED),
    (UnavailableError, ExitCode.UNAVAILABLE),
    (DeletionWorkerError, ExitCode.FAILURE),
)


def exit_code_of(error: DeletionWorkerError) -> ExitCode:
    return next(code for kind, code in EXIT_CODES if isinstance(error, kind))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        sys.exit(ExitCode.FAILURE)
    except DeletionWorkerError as error:  # raised before a command ran (settings, products file)
        click.echo(f"deletion-worker: {error}", err=True)
        sys.exit(exit_code_of(error))
