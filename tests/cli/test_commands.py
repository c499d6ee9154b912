"""Commands are loaded by name when asked for; a role process imports only what it runs."""

from __future__ import annotations

import subprocess
import sys

import click

from worker.cli import COMMANDS, SUBCOMMANDS, cli, load_command


def test_every_command_loads_under_its_own_name() -> None:
    for name in COMMANDS:
        assert load_command(name).name == name
    assert cli.list_commands(click.Context(cli)) == sorted(COMMANDS)
    assert cli.get_command(click.Context(cli), "nonsense") is None


def test_subcommands_from_other_modules_are_in_their_group() -> None:
    jobs = load_command("jobs")
    assert isinstance(jobs, click.Group)
    names = set(jobs.list_commands(click.Context(jobs)))
    assert {"identities", "retry", "audit"} <= names
    assert {group for group, _, _ in SUBCOMMANDS} == {"jobs"}


def test_the_run_command_does_not_import_the_api_the_console_or_the_bench() -> None:
    """Every role process starts with `run`: importing the API, the console and the bench
    too had doubled its start-up (1.9 s of CPU without a bytecode cache, 1.0 s now)."""
    probe = (
        "import sys; from worker.cli import cli, load_command; load_command('run');"
        " print(sorted(m for m in ('fastapi', 'jinja2', 'worker.api', 'worker.console', 'worker.bench')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"
