"""`deletion-worker`: one console script; every command is registered here, by name."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from worker.cli.common import CliError
from worker.errors import ConfigError, DeletionWorkerError, NotFoundError, RefusedError, UnavailableError, UsageError
from worker.ops.exitcodes import ExitCode

# Every command, by name: (module, attribute). A command's module is imported only when
# the command runs or help lists it, so `run`, which every role process starts with,
# never imports the API, the console or the bench (FastAPI, Jinja2, httpx): with all of
# them imported up front, a role process spent 1.9 s of CPU starting (no bytecode cache),
# and a dozen started at once on two cores took over 10 s to consume.
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("worker.cli.service", "migrate"),
    "run": ("worker.cli.service", "run_command"),
    "up": ("worker.cli.service", "up"),
    "demo": ("worker.cli.service", "demo_command"),
    "publish": ("worker.cli.service", "publish"),
    "api": ("worker.cli.api", "api_command"),
    "jobs": ("worker.cli.jobs", "jobs_group"),
    "receipts": ("worker.cli.receipts", "receipts_group"),
    "keys": ("worker.cli.keys", "keys_group"),
    "projects": ("worker.cli.projects", "projects_group"),
    "queues": ("worker.cli.queues", "queues_command"),
    "dlq": ("worker.cli.dlq", "dlq_group"),
    "webhooks": ("worker.cli.webhooks", "webhooks_group"),
    "health": ("worker.cli.health", "health_command"),
    "bench": ("worker.cli.bench", "bench_command"),
}
# Subcommands that live in modules of their own: (group, module, attribute).
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("jobs", "worker.cli.job_results", "identities_command"),
    ("jobs", "worker.cli.job_results", "retry_command"),
    ("jobs", "worker.cli.audit", "audit_command"),
)


def load_command(name: str) -> click.Command:
    module, attribute = COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(module), attribute)
    if isinstance(command, click.Group):
        for group, sub_module, sub_attribute in SUBCOMMANDS:
            if group == name:
                command.add_command(getattr(importlib.import_module(sub_module), sub_attribute))
    return command


class Commands(click.Group):
    """Loads each command when it is asked for (COMMANDS), and ends any command that
    raised one of the service's errors with its exit code (EXIT_CODES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DeletionWorkerError as error:
            raise CliError(str(error), exit_code_of(error)) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Carries out user-data deletion requests across downstream products."""


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
