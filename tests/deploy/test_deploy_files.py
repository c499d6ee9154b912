"""The deployment files parse, set only real settings, start only real roles, and keep
the promises the service relies on (graceful stop, non-root, exec-form entrypoint).
No Docker engine is needed: the files are read, not run."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import worker.api.metrics
import worker.metrics
from worker.roles.spec import parse_role
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTING_NAMES = {f"DELETION_{name.upper()}" for name in Settings.model_fields}
PRODUCTS = list(tomllib.loads((DEPLOY / "products.demo.toml").read_text())["products"])


def yaml_documents() -> Iterator[tuple[Path, Any]]:
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path, document


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_every_yaml_file_parses() -> None:
    paths = {path.name for path, _ in yaml_documents()}
    assert {"compose.yaml", "workers.yaml", "api.yaml", "keda.yaml", "config.yaml", "kustomization.yaml"} <= paths


def test_only_real_settings_are_set() -> None:
    names: set[str] = set()
    for _, document in yaml_documents():
        for node in walk(document):
            if isinstance(node, dict):
                for key in ("environment", "data", "stringData"):
                    if isinstance(node.get(key), dict):
                        names |= {name for name in node[key] if name.startswith("DELETION_")}
    names |= set(re.findall(r"\b(DELETION_[A-Z_]+)=", (DEPLOY / "Dockerfile").read_text()))
    assert names, "no settings found: the test reads the wrong places"
    assert names <= SETTING_NAMES, names - SETTING_NAMES


def test_every_role_started_exists() -> None:
    commands = [
        [str(part) for part in node[key]]
        for _, document in yaml_documents()
        for node in walk(document)
        if isinstance(node, dict)
        for key in ("command", "args")
        if isinstance(node.get(key), list)
    ]
    roles = [command[index + 1] for command in commands for index, part in enumerate(command) if part == "--role"]
    assert {"intake", "dispatch", "acks"} <= set(roles)
    for role in roles:
        parse_role(role, PRODUCTS)  # raises for an unknown role or product


def test_graceful_stop_fits_the_grace_periods() -> None:
    shutdown = Settings().shutdown_timeout
    periods = [
        node["terminationGracePeriodSeconds"]
        for _, document in yaml_documents()
        for node in walk(document)
        if isinstance(node, dict) and "terminationGracePeriodSeconds" in node
    ]
    assert periods
    assert all(period > shutdown for period in periods)
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grace = compose["x-worker"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > shutdown


def test_image_runs_as_non_root_with_an_exec_form_entrypoint() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == ["deletion-worker"]
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert dockerfile.count("FROM ") >= 2  # multi-stage


def test_keda_scales_products_on_their_queues() -> None:
    scaled = {
        document["spec"]["scaleTargetRef"]["name"]: document["spec"]["triggers"][0]["metadata"]["queueName"]
        for _, document in yaml_documents()
        if document.get("kind") == "ScaledObject"
    }
    for product in PRODUCTS:
        assert scaled[f"deletion-worker-product-{product}"] == f"deletion.product.{product}"


def test_dashboard_uses_only_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    known: set[str] = set()
    for collector in list(prometheus_client.REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            known.add(family.name)
            known |= {family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count", "_created")}
    assert worker.api.metrics.API_REQUESTS is not None
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(deletion_[a-z_]+)", target["expr"]))
    assert used
    assert used <= known, used - known


def _requirement_key(name: str, specifier: str, extras: Iterable[str]) -> tuple[str, SpecifierSet, frozenset[str]]:
    return canonicalize_name(name), SpecifierSet(specifier), frozenset(extras)


def test_uv_lock_was_made_from_this_pyproject() -> None:
    """What CI's `uv lock --check` refuses, caught without uv or the network: a dependency
    added, dropped or re-bounded in pyproject.toml since uv.lock was written. The fix is
    `.venv/tools/bin/uv lock`."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _requirement_key(requirement.name, str(requirement.specifier), requirement.extras)
        for requirement in map(
            Requirement,
            [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)],
        )
    }
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    ours = next(package for package in lock["package"] if package["name"] == project["name"])
    locked = {
        _requirement_key(entry["name"], entry.get("specifier", ""), entry.get("extras", ()))
        for entry in ours["metadata"]["requires-dist"]
    }
    assert locked == wanted, f"uv.lock is out of date: {wanted ^ locked}"


def test_every_install_reads_the_lock_with_the_same_uv() -> None:
    dev_sh = (DEPLOY / "dev.sh").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pinned = re.search(r"^UV_VERSION=(\S+)$", dev_sh, re.MULTILINE)
    assert pinned is not None
    assert f"uv=={pinned.group(1)}" in dockerfile
    assert "sync --locked" in dev_sh
    assert dockerfile.count("uv sync --locked") == 2
    assert "pip install -e" not in dev_sh  # nothing installed around the lock
