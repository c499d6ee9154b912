"""Node.js in tests (the AsyncAPI parser, the example product): find node and npm, and
install a directory's pinned packages when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_TIMEOUT = 300


def node_and_npm(purpose: str) -> tuple[str, str]:
    """Skipped without them locally; under CI their absence fails the test."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = f"node and npm are needed to {purpose}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node, npm


def npm_ci(npm: str, directory: Path) -> None:
    """Install exactly the lock file's packages. No install scripts: none of ours needs
    one, and one dependency's only reports the install to an analytics service."""
    install = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    assert install.returncode == 0, f"npm ci failed:\n{install.stdout}\n{install.stderr}"
