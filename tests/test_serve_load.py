"""The serving benches' server start-up (bench/load_client.py): its stderr must not be a pipe nobody drains."""

import sys
from pathlib import Path

from bench.load_client import free_port, log_tail, start

NOISY_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
sys.stderr.write("x" * 300_000 + "\\n")  # ~5 pipe buffers of log before serving: blocks on an undrained pipe
sys.stderr.flush()
class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


def test_a_server_that_logs_300_kb_still_starts_and_its_log_is_kept(tmp_path: Path) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(NOISY_SERVER)
    port = free_port()
    log = tmp_path / "server.log"
    proc = start([sys.executable, str(script), str(port)], f"http://127.0.0.1:{port}", "/", timeout=20, log=log)
    try:
        assert proc.poll() is None and proc.log == log
        assert log.read_bytes().startswith(b"x" * 300_000) and "200" in log_tail(log, 100)  # its access log too
    finally:
        proc.kill()
        proc.wait(timeout=10)
