"""`deletion-worker projects ...`"""

from __future__ import annotations

import click

from worker.cli import common
from worker.store.projects import create_project


@click.group("projects")
def projects_group() -> None:
    """Projects: a request names its project by projectKey."""


@projects_group.command("create")
@click.option("--org", required=True, help="Organization id (created if new).")
@click.option("--name", required=True, help="Project name.")
def create(org: str, name: str) -> None:
    """Create a project; prints {"projectId": ..., "projectKey": ...}."""
    project_id, key = common.with_database(common.settings(), lambda connection: create_project(connection, org, name))
    common.echo_json({"projectId": project_id, "projectKey": key})
