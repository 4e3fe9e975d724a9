"""The ``retriever`` console script: thin typer commands over library functions.

Other packages add subcommands through the ``retriever.commands`` entry-point group (``training``
adds ``train``, ``service`` adds ``serve``), so the library never imports them.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import typer

from retriever.cli.calibrate_command import calibrate_command
from retriever.cli.data_commands import data_app
from retriever.cli.export_command import export_app
from retriever.cli.index_commands import index_app
from retriever.cli.query_commands import eval_command, rerank_command, search_command
from retriever.errors import RetrieverError

app = typer.Typer(
    name="retriever",
    help="Train retrievers and rerankers, build FAISS indexes, evaluate and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(index_app, name="index")
app.add_typer(data_app, name="data")
app.add_typer(export_app, name="export")
app.command("search")(search_command)
app.command("eval")(eval_command)
app.command("rerank")(rerank_command)
app.command("calibrate")(calibrate_command)


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "sentence_transformers", "transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load_plugins() -> None:
    for entry in entry_points(group="retriever.commands"):
        try:
            entry.load()(app)
        except ImportError as exc:  # a plugin whose extras are missing must not break the rest
            logging.getLogger(__name__).debug("skipping command plugin %s: %s", entry.name, exc)


def main() -> None:
    _load_plugins()
    try:
        app()
    except RetrieverError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None
