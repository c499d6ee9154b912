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
    """A RabbitMQ node of its own (own name, ports, data directory); restarts keep its data.
    Nodes given the same `cookie` may be clustered (tests.faults.cluster)."""

    def __init__(self, *config: str, name: str = "", cookie: str = "") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dwfault-rmq-"))
        self.node = f"{name or 'dwfault' + secrets.token_hex(3)}@localhost"
        self.port = free_port()
        # Fixed for the node's life: its peers find it through epmd either way, but a
        # restarted node on the same port is the same node to anyone watching.
        self.dist_port = free_port()
        if cookie:
            cookie_file = self.root / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
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
            "RABBITMQ_DIST_PORT": str(self.dist_port),
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

    def ctl(self, *args: str, tool: str = "rabbitmqctl", check: bool = True, timeout: float = 60) -> str:
        """`rabbitmqctl -n NODE ARGS`, or another tool of the bin directory (rabbitmq-queues)."""
        done = subprocess.run(
            [str(RABBITMQ_BIN / tool), "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            timeout=timeout,
            check=False,
            text=True,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {self.node}: {done.stdout}{done.stderr}")
        return done.stdout

    def kill9(self) -> None:
        """SIGKILL to the Erlang VM itself (its pid file), as a crashed host would leave it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
            os.kill(int((self.root / "pid").read_text().strip()), signal.SIGKILL)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.ctl("stop", check=False)
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
    """A Postgres cluster of its own, in a temporary directory, on a free port. With
    `standby_of`, a streaming replica of that server (a base backup with its recovery
    settings written, -R) instead of a fresh cluster. `settings` are passed as -c at start."""

    def __init__(self, *settings: str, standby_of: PrivatePostgres | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dwfault-pg-"))
        self.port = free_port()
        self.settings = settings
        shutil.chown(self.root, "postgres")
        if standby_of is None:
            command = [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
        else:
            command = [str(POSTGRES_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(standby_of.port),
                       "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
                       "--no-sync"]  # fmt: skip
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        settings = ("listen_addresses=127.0.0.1", "fsync=off", *self.settings)
        options = [arg for setting in settings for arg in ("-c", setting)]
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "postgres"), "-D", str(self.data),
             "-p", str(self.port), "-k", str(self.root), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, 30)

    def stop(self, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT): sessions end, a checkpoint is written and sent to any
        standby first. Immediate (SIGQUIT): the server is gone at once, as in a crash."""
        pid_file = self.data / "postmaster.pid"
        if self.process is None:
            return
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def promote(self) -> None:
        """A standby becomes a primary (and accepts writes) once this returns."""
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "pg_ctl"), "promote", "-D", str(self.data),
             "-w", "-t", "60"],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
