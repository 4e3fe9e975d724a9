"""``retriever serve``: registered into the ``retriever`` CLI through the ``retriever.commands`` entry point."""

from __future__ import annotations

import typer

H11_MAX_HEADER_BYTES = 16 * 1024  # an incomplete request head larger than this is refused
GRACEFUL_SHUTDOWN_S = 10


def serve_command(
    index: list[str] = typer.Option(..., "--index", "-i", help="Index name or path (repeat to serve several)."),
    reranker: str | None = typer.Option(None, help="Reranker folder or smollm2; default: the bi-encoder's cosine."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, min=1, max=65535),
    api_key: str | None = typer.Option(None, envvar="RETRIEVER_API_KEY", help="Require Authorization: Bearer KEY."),
    fallback_to_previous: bool = typer.Option(
        False, "--fallback-to-previous", envvar="RETRIEVER_FALLBACK_TO_PREVIOUS",
        help="If an index's current version is damaged, serve the previous one kept on disk (logged at ERROR)."),
    backend: str | None = typer.Option(None, "--backend", help="torch | onnx | onnx-int8 | auto (default, "
                                                               "$RETRIEVER_BACKEND: the fastest exported backend "
                                                               "that passed its guard)."),
) -> None:
    """Serve search, rerank, embeddings and document upserts over REST (FastAPI + uvicorn)."""
    import uvicorn  # CLI start-up: only `retriever serve` loads the server

    from service.app import create_app  # CLI start-up: fastapi and the models' code
    from service.settings import Settings  # CLI start-up: pydantic-settings

    overrides = {"indexes": index, "reranker": reranker, "api_key": api_key,
                 "fallback_to_previous": fallback_to_previous or None, "backend": backend}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    # Idle keep-alive connections close after keep_alive_s; a body that stalls gets a 408 after
    # body_timeout_s (RequestContext); request heads are bounded by h11.
    # http="h11" always: the header limit above is h11's (httptools, uvicorn's auto pick, has none).
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, workers=1, loop=settings.loop,
                http="h11", timeout_keep_alive=settings.keep_alive_s,
                h11_max_incomplete_event_size=H11_MAX_HEADER_BYTES, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
