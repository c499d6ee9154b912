"""Settings come from DELETION_* variables; a wrong one is one clear line."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.products import ProductsFileError, load_products
from worker.settings import Settings, SettingsError, get_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DELETION_DATABASE_URL", "DELETION_AMQP_URL", "DELETION_PRODUCTS_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.products_file.name == "products.demo.toml"


def test_wrong_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DELETION_PREFETCH", "lots")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=r"^invalid setting: DELETION_PREFETCH: "):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_cli_reports_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", "migrate"],
        env={"DELETION_AMQP_URL": "http://nope", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        "deletion-worker: invalid setting: DELETION_AMQP_URL: Value error, must start with amqp:// or amqps://"
    ]


def test_products_file_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "products.toml"
    with pytest.raises(ProductsFileError, match="does not exist"):
        load_products(path)
    path.write_text("[products.x]\nhandler = 'ftp'\n")
    with pytest.raises(ProductsFileError, match=r"products\.x"):
        load_products(path)
    path.write_text("[products.x\n")
    with pytest.raises(ProductsFileError, match="not valid TOML"):
        load_products(path)
    path.write_text(
        '[products.sessions]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
        'statements = ["DELETE FROM t WHERE u = ANY($1)"]\n'
        '[products.crm]\nhandler = "external"\n'
    )
    products = load_products(path)
    assert products.names == ["sessions", "crm"]
    assert products.built_in() == ["sessions"]


def test_the_deploy_files_placeholder_keys_are_recognised_as_weak() -> None:
    """Before: only the built-in default warned; the deploy files' `change-me` did not."""
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    found = re.findall(r"DELETION_IDENTITY_HASH_KEY:\s*(\S+)", (deploy / "compose.yaml").read_text())
    found += re.findall(r"DELETION_IDENTITY_HASH_KEY:\s*(\S+)", (deploy / "k8s" / "secret.yaml").read_text())
    assert len(found) == 2
    for placeholder in [*found, "change-me-in-production", "short"]:
        assert Settings(identity_hash_key=SecretStr(placeholder)).identity_hash_key_is_weak(), placeholder
    assert not Settings(identity_hash_key=SecretStr(secrets.token_urlsafe(32))).identity_hash_key_is_weak()


def test_a_primary_and_its_standbys_in_one_url() -> None:
    url = "postgresql://postgres@10.0.0.1:5432,10.0.0.2:5432/deletion?target_session_attrs=read-write"
    assert Settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://postgres@10.0.0.1:5432,/deletion", "an empty entry in the list of hosts"),
        ("postgresql://postgres@a:5432,b:5432/db?target_session_attrs=writable", "target_session_attrs is one of"),
    ],
)
def test_a_mistaken_host_list_is_refused_at_start(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(database_url=url)


def test_broker_urls_are_the_cluster_list_or_the_single_url() -> None:
    assert Settings(amqp_url="amqp://one/").broker_urls == ("amqp://one/",)
    several = Settings(amqp_url="amqp://one/", amqp_urls="amqp://a/, amqp://b/,amqp://c/")
    assert several.broker_urls == ("amqp://a/", "amqp://b/", "amqp://c/")
    shuffled = several.model_copy(update={"amqp_shuffle": True})
    orders = {shuffled.broker_urls for _ in range(200)}
    assert len(orders) > 1
    assert all(sorted(order) == sorted(several.broker_urls) for order in orders)
    with pytest.raises(ValueError, match="amqp://"):
        Settings(amqp_urls="amqp://a/,http://b/")
