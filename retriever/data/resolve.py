"""Find a dataset by path or name along the data path, or download it with beir's downloader."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from retriever.errors import DataError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_PATH_ENV = "RETRIEVER_DATA_PATH"
DEFAULT_DATA_PATH = ("data", "../shared/data", str(PROJECT_ROOT / "data"), str(PROJECT_ROOT.parent / "shared/data"))
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


def data_path() -> list[Path]:
    """Folders searched for dataset names: ``$RETRIEVER_DATA_PATH`` (colon-separated) then the defaults."""
    env = os.environ.get(DATA_PATH_ENV, "")
    entries = [e for e in env.split(os.pathsep) if e] + list(DEFAULT_DATA_PATH)
    seen: list[Path] = []
    for entry in entries:
        folder = Path(entry).expanduser().resolve()
        if folder not in seen:
            seen.append(folder)
    return seen


def resolve_dataset(name_or_path: str, download: bool = True) -> Path:
    """Return the folder of a dataset given as a path, a name on the data path, or a BEIR name to download."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise DataError(f"dataset folder '{name_or_path}' does not exist")
    for folder in data_path():
        if (folder / name_or_path / "corpus.jsonl").is_file():
            return folder / name_or_path
    if not download:
        raise DataError(f"unknown dataset '{name_or_path}': not found on the data path ({_path_text()})")
    return _download(name_or_path)


def _path_text() -> str:
    return os.pathsep.join(str(p) for p in data_path())


def _download(name: str) -> Path:
    from beir import util  # CLI start-up: beir.util loads in ~3 s

    target = Path(os.environ.get(DATA_PATH_ENV, "data").split(os.pathsep)[0]).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    url = BEIR_URL.format(name=name)
    logger.info("downloading %s from %s", name, url)
    try:
        folder = Path(util.download_and_unzip(url, str(target)))
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DataError(
            f"unknown dataset '{name}': not on the data path ({_path_text()}) and the download from {url} "
            f"failed ({type(exc).__name__}: {str(exc)[:120]}). Offline? Put the BEIR folder on "
            f"${DATA_PATH_ENV}."
        ) from None
    if not (folder / "corpus.jsonl").is_file():
        raise DataError(f"download of '{name}' did not produce a BEIR folder at {folder}")
    return folder
