"""The README is the front door: it names every setting and every role there is."""

from __future__ import annotations

from pathlib import Path

from worker.roles.spec import SIMPLE_ROLES
from worker.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = []
    for field, info in Settings.model_fields.items():
        # A standard variable of another project (OTEL_EXPORTER_OTLP_ENDPOINT) keeps its own name.
        name = info.validation_alias if isinstance(info.validation_alias, str) else f"DELETION_{field.upper()}"
        # Groups are written `DELETION_RETRY_MAX_ATTEMPTS` / `_BASE_MS` / `_CAP_MS`.
        short = "`_" + "_".join(name.split("_")[-2:]) + "`"
        if name not in README and short not in README:
            missing.append(name)
    assert missing == []


def test_every_role_is_documented() -> None:
    assert [role for role in SIMPLE_ROLES if f"`{role}`" not in README] == []
