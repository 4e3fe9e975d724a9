"""The service as a real process on loopback, which tests can kill -9 and start again on the same index."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``retriever serve --index <index>`` on a free port; :meth:`start` waits for ``/ready``."""

    def __init__(self, index: Path, cache: Path) -> None:
        self.index, self.cache, self.port = index, cache, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = os.environ | {"RETRIEVER_CACHE_DIR": str(self.cache), "RETRIEVER_USE_GPU": "false",
                            "RETRIEVER_TORCH_THREADS": "1"}
        # stderr to a file, not a pipe: a pipe nobody reads fills up and blocks the server's logging
        self.cache.mkdir(parents=True, exist_ok=True)
        self.log = self.cache / f"server-{self.port}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "retriever", "serve", "--index", str(self.index), "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 300  # a loaded 2-core machine starts it slowly
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace")[-2000:])
            time.sleep(0.3)
        self.kill9()  # never leave a server behind a failed test
        raise TimeoutError(f"server did not become ready: {self.log.read_text(errors='replace')[-2000:]}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
