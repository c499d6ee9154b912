"""Worker roles as real OS processes, so that a test can kill -9 one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from worker.cli import main; main()"]


class WorkerProcesses:
    def __init__(self, database_url: str, amqp_url: str, prefix: str, products_file: Path, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "DELETION_DATABASE_URL": database_url,
            "DELETION_AMQP_URL": amqp_url,
            "DELETION_TOPOLOGY_PREFIX": prefix,
            "DELETION_PRODUCTS_FILE": str(products_file),
            "DELETION_METRICS_PORT": "0",
            "DELETION_LOG_FORMAT": "json",
            "DELETION_DISPATCH_INTERVAL": "0.2",
            "DELETION_RETRY_BASE_MS": "100",
            "DELETION_RETRY_CAP_MS": "1000",
        }
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self, name: str, *roles: str, **settings: str) -> subprocess.Popen[bytes]:
        args = [arg for role in roles for arg in ("--role", role)]
        self.started += 1
        log = (self.log_dir / f"{name}-{self.started}.log").open("wb")
        process = subprocess.Popen(
            [*CLI, "run", *args], env={**self.env, **settings}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.running[name] = process
        return process

    def kill9(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.running.values():
            process.terminate()
        for process in self.running.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()
