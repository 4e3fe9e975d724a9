"""The ``--backend torch|onnx|onnx-int8|auto`` option every model-running command shares."""

from __future__ import annotations

import os

import typer

from retriever.onnx.files import BACKEND_ENV, check_backend_name

BackendOpt = typer.Option(None, "--backend", help="Inference runtime: torch | onnx | onnx-int8 | auto (the fastest "
                                                  "exported backend that passed its guard); default "
                                                  "$RETRIEVER_BACKEND, else torch. See 'retriever export onnx'.")


def use_backend(backend: str | None) -> None:
    """Make ``backend`` the default of every encoder and reranker this process loads."""
    if backend is None:
        return
    try:
        check_backend_name(backend)
    except Exception as exc:
        raise typer.BadParameter(str(exc), param_hint="--backend") from None
    os.environ[BACKEND_ENV] = backend
