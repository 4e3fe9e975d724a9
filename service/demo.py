"""The end of ``make demo``: start the service, send a real search and a real rerank, print the curl
commands to try next, and keep serving until Ctrl-C (``--no-keep-serving`` to stop right away)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import typer


def main(
    index: str = typer.Option(..., "--index"),
    port: int = typer.Option(8000),
    query: str = typer.Option("Vitamin D deficiency is associated with depression"),
    keep_serving: bool = typer.Option(True, "--keep-serving/--no-keep-serving"),
) -> None:
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "retriever", "serve", "--index", index, "--port", str(port)],
                              env=os.environ | {"RETRIEVER_LOG_JSON": "false"})
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise typer.Exit(1)
            time.sleep(0.5)
        search = {"query": query, "top_k": 5, "rerank": True, "rerank_depth": 20}
        found = httpx.post(f"{url}/search", json=search, timeout=60).json()
        typer.echo("\nPOST /search ->")
        for hit in found["results"][0]["hits"]:
            rel = "n/a" if hit["relevance"] is None else f"{hit['relevance']:.3f}"
            typer.echo(f"  {hit['id']:>10}  cos {hit['score']:.3f}  relevance {rel}  rerank {hit['rerank_score']:.3f}"
                       f"  {(hit['title'] or '')[:70]}")
        typer.echo(f"  calibrated={found['calibrated']} threshold={found['threshold']} timings={found['timings_ms']}")
        docs = [h["text"][:300] for h in found["results"][0]["hits"][:3]] + ["Coffee is brewed from roasted beans."]
        reranked = httpx.post(f"{url}/rerank", json={"query": query, "documents": docs, "top_n": 3}, timeout=60).json()
        typer.echo(f"\nPOST /rerank -> {json.dumps(reranked)}")
        typer.echo(f"""
Try next:
  curl -s {url}/search -H 'content-type: application/json' -d '{json.dumps({"query": query, "top_k": 3})}'
  curl -s {url}/rerank -H 'content-type: application/json' -d '{{"query": "vitamin d", "documents": ["a", "b"]}}'
  curl -s {url}/v1/embeddings -H 'content-type: application/json' -d '{{"input": "hello"}}'
  curl -s {url}/info ; curl -s {url}/metrics | head
""")
        if keep_serving:
            typer.echo(f"serving on {url} (Ctrl-C to stop)")
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    typer.run(main)
