"""Private RabbitMQ and Postgres servers for tests that restart them."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def available() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists() and (POSTGRES_BIN / "postgres").exists()


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (own name, ports, data directory); restarts keep its data."""

    def __init__(self, *config: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dwfault-rmq-"))
        self.node = f"dwfault{secrets.token_hex(3)}@localhost"
        self.port = free_port()
        (self.root / "plugins").write_text("[].\n")
        lines = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", *config]
        (self.root / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.root / "env.conf").write_text("")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "env.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self._env(),
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 60)
        time.sleep(1)  # the listener opens just before the node finishes booting

    def stop(self) -> None:
        if self.process is None:
            return
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
            env=self._env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivatePostgres:
    """A Postgres cluster of its own, in a temporary directory, on a free port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dwfault-pg-"))
        self.port = free_port()
        shutil.chown(self.root, "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "initdb"), "-D", str(self.root / "data"),
             "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "postgres"), "-D", str(self.root / "data"),
             "-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        pid_file = self.root / "data" / "postmaster.pid"
        if self.process is None:
            return
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
