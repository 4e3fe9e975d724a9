"""``retriever train`` (or ``train-reranker``) under ``torchrun --nproc_per_node 2`` (gloo on CPU), for the DDP
tests of the loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def torchrun_train(args: list[str], command: str = "train") -> dict:
    """Run two processes to the end; return the one summary (rank 0 reports alone)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "retriever", command, *args, "--json"],
                            capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"steps"') == 1, result.stdout  # one report, from rank 0
    return json.loads(result.stdout[result.stdout.index("{"):])
