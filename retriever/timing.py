"""Per-stage wall-clock timings: what the library's search and the service both report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StageTimer:
    """Accumulates milliseconds per stage name in :attr:`ms`; ``observe(name, seconds)``, when given, also
    receives each measurement (the service feeds its Prometheus histogram)."""

    def __init__(self, observe: Callable[[str, float], None] | None = None) -> None:
        self.ms: dict[str, float] = {}
        self._observe = observe

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.ms[name] = round(self.ms.get(name, 0.0) + 1000 * seconds, 3)
            if self._observe is not None:
                self._observe(name, seconds)
