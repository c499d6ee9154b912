"""`deletion-worker`: one console script, one module per command group."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from worker.exitcodes import ExitCode
from worker.products import ProductsFileError
from worker.settings import SettingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Carries out user-data deletion requests across downstream products."""


def _register_commands() -> None:
    """Each module of this package contributes the click commands in its COMMANDS list."""
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_register_commands()


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
    except (SettingsError, ProductsFileError) as error:
        click.echo(f"deletion-worker: {error}", err=True)
        sys.exit(ExitCode.CONFIG)
