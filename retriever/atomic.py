"""Crash-safe writes: a file through a temporary sibling, fsync and rename; a folder through a staging
folder renamed (or merged) into place; an advisory file lock for read-merge-write updates across processes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it (os.umask sets it, racing other threads' file creation)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing, with the mode a plain ``open`` gives (0644 under umask 022);
    ``mkstemp`` alone would leave it 0600, unreadable by a container user or a colleague."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(target: Path, merge: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; when the block succeeds, put it in place.

    By default the staging folder replaces ``target`` whole (one rename); with ``merge`` each of its items
    is renamed into ``target``, and what else ``target`` holds (checkpoints, logs) stays. A failure removes
    the staging folder and leaves ``target`` as it was, so a crash never leaves half a model.
    """
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if merge:
            target.mkdir(parents=True, exist_ok=True)
            for item in staging.iterdir():
                destination = target / item.name
                if destination.is_dir() and not destination.is_symlink():
                    shutil.rmtree(destination)
                os.replace(item, destination)
            staging.rmdir()
        else:
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def file_lock(path: Path, exclusive: bool = True) -> Iterator[None]:
    """An advisory ``flock`` on ``path`` (created if absent) for the block; ``exclusive=False`` shares it
    with other readers."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
