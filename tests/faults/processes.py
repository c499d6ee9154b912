"""Worker roles as real OS processes, so that a test can kill -9 one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from worker.amqp import Topology
from worker.products import load_products
from worker.settings import Settings

CLI = [sys.executable, "-c", "from worker.cli import main; main()"]


class WorkerProcesses:
    """`code`: a checkout of the package to run instead of this one (the previous release,
    to test old and new processes side by side); DELETION_FAULTS_CODE sets it for every
    test, to see a fault test fail on an older release."""

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        prefix: str,
        products_file: Path,
        log_dir: Path,
        *,
        code: Path | None = None,
    ) -> None:
        self.code = code or (
            Path(os.environ["DELETION_FAULTS_CODE"]) if os.environ.get("DELETION_FAULTS_CODE") else None
        )
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
            "DELETION_ALLOW_INSECURE_HTTP": "true",
        }
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def topology(self) -> Topology:
        settings = Settings(
            topology_prefix=self.env["DELETION_TOPOLOGY_PREFIX"],
            retry_base_ms=int(self.env["DELETION_RETRY_BASE_MS"]),
            retry_cap_ms=int(self.env["DELETION_RETRY_CAP_MS"]),
        )
        return Topology.for_settings(settings, load_products(Path(self.env["DELETION_PRODUCTS_FILE"])).names)

    def start(self, name: str, *roles: str, **settings: str) -> subprocess.Popen[bytes]:
        return self.start_command(
            name, "run", *(arg for role in roles for arg in ("--role", role)), code=None, **settings
        )

    def start_command(
        self, name: str, *args: str, code: Path | None = None, **settings: str
    ) -> subprocess.Popen[bytes]:
        """`deletion-worker ARGS` as a process of its own (of the checkout `code`, if given),
        its output in the log directory."""
        code = code or self.code
        env = {**self.env, **settings}
        if code is not None:
            env["PYTHONPATH"] = str(code)
        self.started += 1
        with (self.log_dir / f"{name}-{self.started}.log").open("wb") as log:
            process = subprocess.Popen([*CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=code)
        self.running[name] = process
        return process

    def start_every_role(self, products: tuple[str, ...], *, without: tuple[str, ...] = (), **settings: str) -> None:
        """Each role in a process of its own: the production layout."""
        roles = ["intake", "dispatch", "acks", *(f"product:{p}" for p in products)]
        if self.code is None or (self.code / "worker" / "roles" / "reconciler.py").exists():
            roles += ["maintenance", "reconciler"]  # roles of their own since this release
        if self.code is None or (self.code / "worker" / "roles" / "events.py").exists():
            roles += ["events"]
        for role in roles:
            if role not in without:
                self.start(role, role, **settings)

    def peak_rss_mb(self) -> dict[str, float]:
        """Each running process's peak resident memory so far (VmHWM), in MB."""
        peaks = {}
        for name, process in self.running.items():
            status = Path(f"/proc/{process.pid}/status").read_text()
            kilobytes = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[name] = round(kilobytes / 1024, 1)
        return peaks

    def stop(self, name: str) -> None:
        """SIGTERM, as a rollout stops a process, and wait for it to finish."""
        process = self.running.pop(name)
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill9(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))

    def trouble(self, last: int = 80) -> str:
        """The last warnings and errors of every role, one line each: printed when a fault
        test ends, pytest shows them only for a test that failed."""
        lines: list[tuple[str, str]] = []
        for path in sorted(self.log_dir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if '"level": "warning"' in line or '"level": "error"' in line or "Traceback" in line:
                    stamp = line.rpartition('"timestamp": "')[2][:27]
                    lines.append((stamp, f"{path.stem}: {line[:400]}"))
        return "\n".join(line for _, line in sorted(lines)[-last:])

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
