"""The service commands: migrate, run, up, demo, publish."""

from __future__ import annotations

from datetime import datetime

import click
import structlog
from prometheus_client import start_http_server

from worker import producer
from worker.cli import common
from worker.gc_tuning import tune_collector
from worker.ops.demo import DEMO_USERS, ensure_demo_project, ensure_demo_schema, seed_demo_rows
from worker.ops.exitcodes import ExitCode
from worker.ops.migrate import apply_migrations, pending_migrations
from worker.roles.spec import all_roles, parse_role
from worker.runner import ExtraService, WorkerProcess
from worker.settings import Settings

log = structlog.get_logger(__name__)


async def _migrate(loaded: Settings, *, post_deploy: bool = True) -> list[str]:
    try:
        return await apply_migrations(loaded.database_url, loaded.migrations_dir, post_deploy=post_deploy)
    except OSError as error:
        raise common.CliError(f"cannot reach Postgres: {error}", ExitCode.UNAVAILABLE) from None


@click.command("migrate")
@click.option(
    "--pre-deploy",
    is_flag=True,
    help="Only what a rolling upgrade needs first; `migrate` again after it applies the rest (migrations/post/).",
)
def migrate(pre_deploy: bool) -> None:
    """Apply pending SQL migrations (safe to run concurrently; a no-op when up to date)."""
    loaded = common.settings()
    applied = common.run(_migrate(loaded, post_deploy=not pre_deploy))
    pending = common.run(pending_migrations(loaded.database_url, loaded.migrations_dir))
    common.echo_json({"applied": applied, "pending": pending})


def _start_metrics(loaded: Settings) -> None:
    if loaded.metrics_port:
        start_http_server(loaded.metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped from other pods


async def _run_worker(loaded: Settings, roles_text: tuple[str, ...], extra: list[ExtraService]) -> None:
    configured = common.products(loaded)
    specs = (
        [parse_role(text, configured.names) for text in roles_text] if roles_text else all_roles(configured.built_in())
    )
    worker = WorkerProcess(loaded, configured, specs, extra_services=extra)
    worker.install_signal_handlers()
    await worker.run()


@click.command("run")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="intake, dispatch, acks, maintenance, reconciler, events, notify or product:<name>; repeatable.",
)
def run_command(roles: tuple[str, ...]) -> None:
    """Run worker roles (all of them when no --role is given) until SIGTERM."""
    loaded = common.settings()
    _start_metrics(loaded)
    tune_collector()
    common.run(_run_worker(loaded, roles, []))


async def _prepare_demo(loaded: Settings) -> str:
    connection = await common.connect_database(loaded)
    try:
        await ensure_demo_schema(connection)
        await seed_demo_rows(connection)
        return await ensure_demo_project(connection)
    finally:
        await connection.close()


@click.command("demo")
def demo_command() -> None:
    """Create the demo schema, its rows and a demo project; prints {"projectKey": ...}."""
    loaded = common.settings()
    common.echo_json({"projectKey": common.run(_prepare_demo(loaded))})


@click.command("up")
@click.option("--no-api", is_flag=True, help="Run only the workers.")
def up(no_api: bool) -> None:
    """Migrate, set up the demo, and run every role (and the API) in one process."""
    loaded = common.settings()

    async def go() -> None:
        await _migrate(loaded)
        demo_key = await _prepare_demo(loaded)
        log.info(
            "demo_ready",
            project_key=demo_key,
            demo_users=len(DEMO_USERS),
            # No identity value here: logs never carry one, not even a demo user's.
            try_it=f"deletion-worker publish --project {demo_key} --identity userId:<a user_id of demo.profiles>",
        )
        extra: list[ExtraService] = []
        if not no_api:
            from worker.api.server import serve_api  # noqa: PLC0415 - the API is optional here
            from worker.console.app import create_console_app  # noqa: PLC0415

            app = create_console_app(loaded, common.products(loaded))
            extra.append(lambda stopping: serve_api(loaded, stopping, app=app))
        await _run_worker(loaded, (), extra)

    _start_metrics(loaded)
    tune_collector()
    common.run(go())


def _parse_identity(text: str) -> tuple[str, str]:
    namespace, sep, value = text.partition(":")
    if not sep or not namespace or not value:
        raise click.BadParameter(f"expected NAMESPACE:VALUE, got {len(text)} characters without one")
    return namespace, value


def _parse_start_at(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("use epoch milliseconds or an ISO-8601 time with a zone") from None
    if moment.tzinfo is None:
        raise click.BadParameter("an ISO-8601 time needs a zone, e.g. 2030-01-01T00:00:00Z")
    return int(moment.timestamp() * 1000)


@click.command("publish")
@click.option("--project", "project_key", required=True, help="projectKey of the project.")
@click.option("--identity", "identities", multiple=True, required=True, help="NAMESPACE:VALUE; repeatable.")
@click.option("--start-at", help="Not before this time: epoch ms or ISO-8601 with zone.")
@click.option("--action", type=click.Choice(["delete_user_data", "delete_identity"]), default="delete_user_data")
@click.option("--dataset", "dataset_id", default="ALL", show_default=True)
@click.option("--description", default="")
@click.option("--display-name", default="")
@click.option("--reference-id", default=None)
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--dry-run", is_flag=True, help="Every product counts what it would delete and deletes nothing.")
def publish(
    project_key: str,
    identities: tuple[str, ...],
    start_at: str | None,
    action: str,
    dataset_id: str,
    description: str,
    display_name: str,
    reference_id: str | None,
    request_id: str | None,
    dry_run: bool,
) -> None:
    """Publish one deletion request (persistent, confirmed); prints its request id."""
    loaded = common.settings()
    parsed = [_parse_identity(text) for text in identities]
    request = producer.build_request(
        project_key,
        parsed,
        request_id=request_id,
        action=action,
        dataset_id=dataset_id,
        start_at=_parse_start_at(start_at),
        description=description,
        display_name=display_name,
        reference_id=reference_id,
        dry_run=dry_run,
    )
    try:
        common.run(producer.publish_requests(loaded.broker_urls, [request], prefix=loaded.topology_prefix))
    except (TimeoutError, OSError, ConnectionError) as error:
        raise common.CliError(f"cannot reach RabbitMQ: {type(error).__name__}", ExitCode.UNAVAILABLE) from None
    common.echo_json({"requestId": request.request_id})
