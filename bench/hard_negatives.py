"""Issue 4: STAR, ADORE, ADORE + STAR and MW + STAR against zero-shot and in-batch contrastive.

    python -m bench.hard_negatives --dataset scifact --only star --epochs 3
    python -m bench.hard_negatives --dataset scifact --only star --epochs 3 --mine-mode hybrid
    python -m bench.hard_negatives --dataset nfcorpus --only star --only adore-star --rows query --max-epochs 8
    python -m bench.hard_negatives --dataset nfcorpus --only star --rows query --skip-top 30   # filtered pool

Negatives are mined once from the zero-shot index (top 200, labelled positives removed), from its vectors
(``--mine-mode dense``) or from its hybrid ranking (``hybrid``: the index's lexical side fused in, issue 19);
each STAR row samples one of them (seeded), trains ``--epochs`` epochs with the best dev nDCG@10 kept, and
gets a paired t-test against zero-shot; a hybrid-mined row also against the dense-mined one when that run
is saved. ADORE trains the query tower only, against an index copy, so the zero-shot index stays as it is.
``--skip-top`` / ``--relative-margin`` filter the pool before the draw (likely false negatives out,
``retriever mine``'s options); a filtered row is also paired with the unfiltered one when that run is saved.
Trained models go to ``models/<dataset>-<method>[-hybrid-mined][-skip<N>|-margin<F>]/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass

import typer

from bench.common import INDEXES, MODELS, RUNS, ensure_index, paired_columns, rows_label, save_run
from bench.results import record
from retriever.data import load_dataset
from retriever.evaluate.metrics import read_trec_run
from retriever.pipeline import evaluate_index, open_index
from training.adore import train_adore
from training.config import ADORE_LEARNING_RATE, TrainConfig
from training.negatives import MiningParams, mine_from_index, read_negatives
from training.trainer import train

logger = logging.getLogger("bench.hard_negatives")
MINE_MODES = ("dense", "hybrid")


def pool_suffix(skip_top: int = 0, relative_margin: float | None = None, reference: str = "lowest") -> str:
    """The file/folder suffix of a filtered pool: ``-skip<N>``, ``-margin<F>[-highest]``, both, or ``""``."""
    margin = "" if relative_margin is None else f"-margin{relative_margin:g}" + (
        "" if reference == "lowest" else f"-{reference}")
    return (f"-skip{skip_top}" if skip_top else "") + margin


def pool_label(skip_top: int = 0, relative_margin: float | None = None, reference: str = "lowest") -> str:
    """The model-label words of a filtered pool (``", skip top 30"``), ``""`` unfiltered."""
    return (f", skip top {skip_top}" if skip_top else "") + (
        f", margin {relative_margin:g} x {reference} positive" if relative_margin is not None else "")


def negatives_path(dataset: str, mine_mode: str, pool: str = ""):
    """The mined file of one mode and pool filter (the unfiltered dense one keeps its pre-hybrid name, which
    other benches read)."""
    mode = "" if mine_mode == "dense" else f"-{mine_mode}"
    return MODELS / f"{dataset}-negatives{mode}{pool}.json"


def star_folder(dataset: str, method: str, mine_mode: str, pool: str = "") -> str:
    """Model and index name of a STAR-family row: ``<dataset>-<method>[-<mode>-mined][<pool>]``."""
    return f"{dataset}-{method}" + ("" if mine_mode == "dense" else f"-{mine_mode}-mined") + pool


def evaluate_and_record(data, dataset: str, method: str, index, encoder, summary: dict, extra: dict,
                        max_pairs: int | None = None, variant: str = "", baseline=None, run_name: str | None = None,
                        compare: dict | None = None) -> None:
    """Test metrics of one trained model; with ``baseline`` (zero-shot's test run), a paired t-test on
    nDCG@10 against it (``p_vs_zero_shot``) and the run saved to bench/runs/ (as ``run_name``);
    ``compare`` ({label: run}) adds ``p_vs_<label>`` / ``delta_vs_<label>`` for each."""
    report = evaluate_index(index, encoder, data, split="test", k=1000)
    metrics = report.metrics | {"train_seconds": summary["train_seconds"], "samples_per_s": summary["samples_per_s"],
                                "steps": summary["steps"]} | extra
    metrics |= paired_columns(data.qrels("test"), report.run,
                              ({"zero_shot": baseline} if baseline is not None else {}) | (compare or {}))
    if baseline is not None:
        save_run(report.run, run_name or f"{dataset}-test-{method}{variant.replace(' ', '')}")
    label = f"all-MiniLM-L6-v2+{method}{variant}" + (f" ({max_pairs} pairs)" if max_pairs else "")
    record(dataset, "test", method, label, metrics, summary["train_seconds"])


def mine_once(data, dataset: str, mine_mode: str, seed: int, index_dir, index, manifest, encoder,
              skip_top: int = 0, relative_margin: float | None = None, reference: str = "lowest") -> tuple:
    """``(path, seconds)`` of the mined negatives of ``mine_mode`` (top 200 after ``skip_top``, with the
    ``relative_margin`` filter against the ``reference`` positive) from the index at ``index_dir``, mined now
    unless the file exists."""
    path = negatives_path(dataset, mine_mode, pool_suffix(skip_top, relative_margin, reference))
    start = time.perf_counter()
    if not path.is_file():
        params = MiningParams(top_k=200, skip_top=skip_top, relative_margin=relative_margin, seed=seed,
                              margin_reference=reference)
        mine_from_index(data, "train", index_dir, index, manifest, encoder, params, mode=mine_mode).save(path)
    mined = read_negatives(path)
    logger.info("negatives: %s (%s-mined, %d queries)", path, mined.params.get("mode", "dense"), len(mined.negatives))
    return path, time.perf_counter() - start


def check_budget(output, epochs: float, max_steps: int, rows: str) -> None:
    """Refuse to record a reused finished model under another budget than it was trained with."""
    trained = json.loads((output / "train_config.json").read_text())
    was = (trained.get("epochs"), trained.get("max_steps", -1), trained.get("rows", "pair"))
    if was != (epochs, max_steps, rows):
        raise typer.BadParameter(f"{output} was trained for {was[0]} epochs (max_steps {was[1]}, rows {was[2]}), "
                                 f"not {epochs} ({max_steps}, {rows}): move it away to retrain")


def comparison_runs(dataset: str, method: str, mine_mode: str, pool: str = "") -> dict:
    """The saved test runs a row is paired with besides zero-shot ({} if none saved): the dense-mined
    ``method`` for a hybrid-mined row, the unfiltered one (same mode) for a filtered row."""
    wanted = {}
    if mine_mode != "dense":
        wanted["dense_mined"] = star_folder(dataset, method, "dense", pool)
    if pool:
        wanted["unfiltered"] = star_folder(dataset, method, mine_mode)
    paths = {label: RUNS / f"{name}-test.trec" for label, name in wanted.items()}
    return {label: read_trec_run(path) for label, path in paths.items() if path.is_file()}


def main(
    dataset: str = typer.Option("scifact"),
    max_pairs: int | None = typer.Option(None),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(2e-5),
    seed: int = typer.Option(42),
    only: list[str] = typer.Option([], help="Run only these methods (star, mw-star, adore, adore-star)."),
    max_steps: int = typer.Option(-1, help="Cap on training steps (quick checks)."),
    mine_mode: str = typer.Option("dense", help="STAR's negatives: dense | hybrid ranking of the zero-shot index."),
    epochs: float = typer.Option(3.0, help="STAR / MW-STAR epochs (the best dev nDCG@10 is kept)."),
    row_mode: str = typer.Option("pair", "--rows", help="STAR / MW-STAR rows: pair (every labelled pair) | query "
                                 "(one row per training query per epoch, its positive drawn by grade; Tevatron's)"),
    adore_normalize: str = typer.Option("pairs", help="ADORE: pairs (the official loss) | sum | weights."),
    adore_lr: float = typer.Option(ADORE_LEARNING_RATE, help="ADORE's learning rate (official default 5e-6)."),
    max_epochs: int = typer.Option(10, help="ADORE: epochs at most (early stopping on dev nDCG@10)."),
    min_epochs: int = typer.Option(3),
    patience: int = typer.Option(2, help="ADORE: epochs without a better dev nDCG@10 before stopping."),
    time_budget_min: float | None = typer.Option(None, help="ADORE: stop at the first dev evaluation past this "
                                                 "many training minutes (the best epoch is kept)"),
    skip_top: int = typer.Option(0, min=0, help="STAR's pool: skip this many top non-positives (likely false "
                                 "negatives) before taking the top 200."),
    relative_margin: float | None = typer.Option(None, help="STAR's pool: drop negatives scoring above this x the "
                                                 "query's lowest positive score (dense mining only)."),
    margin_reference: str = typer.Option("lowest", help="The relative margin's positive: lowest | highest score."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if mine_mode not in MINE_MODES:
        raise typer.BadParameter(f"--mine-mode must be one of {', '.join(MINE_MODES)}, got '{mine_mode}'")
    if relative_margin is not None and mine_mode != "dense":
        raise typer.BadParameter("--relative-margin is a cosine margin: use it with --mine-mode dense")
    pool = Pool(skip_top, relative_margin, margin_reference)
    data = load_dataset(dataset)
    zero_index, zero_manifest, zero_encoder, _ = ensure_index(data, f"{dataset}-zero-shot", "default")
    negatives, mining_seconds = None, 0.0
    if any(not only or m in only for m in ("star", "mw-star", "adore-star")):  # ADORE alone mines at every step
        negatives, mining_seconds = mine_once(data, dataset, mine_mode, seed, INDEXES / f"{dataset}-zero-shot",
                                              zero_index, zero_manifest, zero_encoder, *pool.as_args())
    zero_run = evaluate_index(zero_index, zero_encoder, data, split="test", k=1000, with_auc=False).run
    rows = Rows(data, dataset, zero_run, max_pairs, dict(
        data=dataset, batch_size=batch_size, learning_rate=learning_rate, seed=seed, epochs=1.0, max_steps=max_steps,
        max_pairs=max_pairs, dev_corpus_size=500, early_stopping_patience=None))
    star_rows(rows, [m for m in ("star", "mw-star") if not only or m in only], negatives, mining_seconds, mine_mode,
              epochs, row_mode, pool)
    adore = rows.common | dict(learning_rate=adore_lr, epochs=float(max_epochs), min_epochs=min_epochs,
                               early_stopping_patience=patience)
    adore_rows(rows, [m for m in ("adore", "adore-star") if not only or m in only], adore, adore_normalize,
               time_budget_min, pool)


@dataclass(frozen=True)
class Pool:
    """STAR's negative-pool filter (``retriever mine``'s ``skip_top`` and ``relative_margin``)."""

    skip_top: int = 0
    relative_margin: float | None = None
    reference: str = "lowest"

    def as_args(self) -> tuple:
        return self.skip_top, self.relative_margin, self.reference

    @property
    def suffix(self) -> str:
        return pool_suffix(*self.as_args())

    @property
    def label(self) -> str:
        return pool_label(*self.as_args())


@dataclass
class Rows:
    """What every row of one run shares: the data, zero-shot's test run (the t-tests' baseline), the pair
    cap of the labels, and the training settings common to all methods."""

    data: object
    dataset: str
    zero_run: dict
    max_pairs: int | None
    common: dict


def star_rows(rows: Rows, methods: list[str], negatives, mining_seconds: float, mine_mode: str,
              epochs: float, row_mode: str = "pair", pool: Pool = Pool()) -> None:
    """STAR and MW-STAR on the mined negatives: trained (or reused at the same budget), indexed, recorded."""
    for method in methods:
        loss = {"star": "star", "mw-star": "mw"}[method]
        name = star_folder(rows.dataset, method, mine_mode, pool.suffix)
        output = MODELS / name
        if not (output / "train_summary.json").is_file():
            train(TrainConfig(loss=loss, negatives_file=negatives, n_negatives=1, output=output,
                              resume=(output / "checkpoints").is_dir(), rows=row_mode,
                              **(rows.common | {"epochs": epochs})))
        check_budget(output, epochs, rows.common["max_steps"], row_mode)
        summary = json.loads((output / "train_summary.json").read_text())
        index, _, encoder, encode_seconds = ensure_index(rows.data, name, str(output))
        evaluate_and_record(rows.data, rows.dataset, method, index, encoder, summary, {
            "mining_seconds": mining_seconds, "corpus_encode_seconds": encode_seconds, "epochs": epochs,
            "best_dev_ndcg@10": summary.get("best_dev_ndcg@10"), "train_rows": summary.get("rows")}, rows.max_pairs,
            variant=f" ({mine_mode}-mined{pool.label}){rows_label(row_mode)}",
            baseline=rows.zero_run, run_name=f"{name}-test",
            compare=comparison_runs(rows.dataset, method, mine_mode, pool.suffix))


def adore_rows(rows: Rows, methods: list[str], adore: dict, normalize: str, time_budget_min: float | None,
               pool: Pool = Pool()) -> None:
    """ADORE over the zero-shot index and ADORE + STAR over (the dense-mined, ``pool``-filtered) STAR's, each
    against a copy of that index."""
    changed = ([(f"-norm-{normalize}", f"norm={normalize}")] if normalize != "pairs" else []) + (
        [(f"-lr{adore['learning_rate']:g}", f"lr={adore['learning_rate']:g}")]
        if adore["learning_rate"] != ADORE_LEARNING_RATE else [])
    variant = "".join(folder for folder, _ in changed)  # model/index folder suffix
    settings = ", ".join(label for _, label in changed)
    star_name = star_folder(rows.dataset, "star", "dense", pool.suffix)
    for method, base in (("adore", f"{rows.dataset}-zero-shot"), ("adore-star", star_name)):
        if method not in methods:
            continue
        suffix = variant + (pool.suffix if method == "adore-star" else "")
        target = INDEXES / f"{rows.dataset}-{method}{suffix}"
        output = MODELS / f"{rows.dataset}-{method}{suffix}"
        if not (output / "train_summary.json").is_file():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(INDEXES / base, target)
            train_adore(TrainConfig(method="adore", index=str(target), output=output, adore_normalize=normalize,
                                    **adore), time_budget_s=time_budget_min * 60 if time_budget_min else None)
        summary = json.loads((output / "train_summary.json").read_text())
        index, _, encoder = open_index(target)
        evaluate_and_record(rows.data, rows.dataset, method, index, encoder, summary, {
            "corpus_encode_seconds": 0.0, "epochs_run": summary.get("epochs_run"),
            "best_step": summary.get("best_step"), "best_dev_ndcg@10": summary.get("best_dev_ndcg@10"),
            "stopped_early": summary.get("stopped_early"),
            "learning_rate": f"{summary['learning_rate']:g}",  # a string: records round floats to 5 decimals
        }, rows.max_pairs, variant=adore_variant(settings, pool.label if method == "adore-star" else ""),
            baseline=rows.zero_run, compare=star_run(star_name) if method == "adore-star" else None)


def adore_variant(settings: str, pool_words: str) -> str:
    """An ADORE row's label suffix: its non-default settings and (ADORE + STAR) STAR's pool filter."""
    words = ", ".join(w for w in (settings, pool_words.removeprefix(", ")) if w)
    return f" ({words})" if words else ""


def star_run(star_name: str) -> dict:
    """STAR's saved test run (``star_name``), ADORE + STAR's own baseline ({} if none was saved)."""
    path = RUNS / f"{star_name}-test.trec"
    return {"star": read_trec_run(path)} if path.is_file() else {}


if __name__ == "__main__":
    typer.run(main)
