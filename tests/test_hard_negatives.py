import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from retriever.data import load_beir
from retriever.index import load_index
from retriever.pipeline import build_index
from training.adore import (
    adore_loss,
    delta_mrr_weights,
    dense_adore_loss,
    dense_candidates,
    dynamic_candidates,
    pair_mask,
)
from training.config import TrainConfig
from training.losses import star_from_scores
from training.negatives import MiningParams, mine_hard_negatives, read_negatives


@pytest.fixture
def tiny_built(tiny_dir: Path, encoder, tmp_path: Path):
    ds = load_beir(tiny_dir)
    index, manifest, path = build_index(ds, encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    return ds, index, manifest, path


def test_mining_never_returns_a_labelled_positive(tiny_built, encoder, tmp_path) -> None:
    ds, index, manifest, _ = tiny_built
    for params in (MiningParams(top_k=20), MiningParams(top_k=3, skip_top=1), MiningParams(sampling="random", n_keep=2),
                   MiningParams(max_score=0.3), MiningParams(relative_margin=0.95)):
        mined = mine_hard_negatives(ds, "train", index, manifest, encoder, params)
        for qid, negatives in mined.negatives.items():
            labelled = {d for split in ds.file_qrels.values() for d in split.get(qid, {})}
            assert not labelled & set(negatives), (params, qid)
    full = mine_hard_negatives(ds, "train", index, manifest, encoder, MiningParams(top_k=20))
    q = next(iter(full.negatives))
    assert len(full.negatives[q]) == 12 - len(ds.file_qrels["train"][q])  # everything else, ranked
    skipped = mine_hard_negatives(ds, "train", index, manifest, encoder, MiningParams(top_k=3, skip_top=1))
    assert skipped.negatives[q] == full.negatives[q][1:4]
    path = full.save(tmp_path / "neg.json")
    again = read_negatives(path)
    assert again.negatives == full.negatives and again.model_fingerprint == encoder.document.fingerprint


def test_relative_margin_against_the_highest_positive_keeps_more_and_refuses_an_unknown_reference(
        tiny_built, encoder) -> None:
    from retriever.errors import DataError
    from retriever.pipeline import positive_scores

    ds, index, manifest, _ = tiny_built
    mine = lambda **kw: mine_hard_negatives(ds, "train", index, manifest, encoder,  # noqa: E731
                                            MiningParams(top_k=20, relative_margin=1.0, **kw)).negatives
    full = mine_hard_negatives(ds, "train", index, manifest, encoder, MiningParams(top_k=20)).negatives
    lowest, highest = mine(), mine(margin_reference="highest")
    positives = positive_scores(ds, encoder, ds.qrels("train"))
    qvec = encoder.encode_queries([ds.queries[q] for q in full])
    result = index.search(qvec, 50)
    for q, ids, scores in zip(full, result.ids, result.scores, strict=True):
        score = dict(zip(ids, scores, strict=True))
        assert highest[q] == [d for d in full[q] if score[d] <= max(positives[q].values())]
        assert lowest[q] == [d for d in full[q] if score[d] <= min(positives[q].values())]
        assert set(lowest[q]) <= set(highest[q])
    with pytest.raises(DataError, match="margin_reference must be one of lowest, highest"):
        mine(margin_reference="median")


def test_star_loss_matches_hand_computation() -> None:
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]], dtype=torch.float64)
    excluded = torch.tensor([[True, False, True], [False, True, False]])  # (0, 2) is a known positive
    pairs = [(0.9, 0.2), (0.8, 0.1), (0.8, 0.3)]
    expected = sum(math.log1p(math.exp((n - p) / 0.1)) for p, n in pairs) / 3
    assert star_from_scores(scores, torch.tensor([0, 1]), excluded, 0.1).item() == pytest.approx(expected)


def test_delta_mrr_weights_hand_example() -> None:
    ranks = torch.tensor([[1, 2, 3, 6]])  # the last is an unretrieved positive past the cut-off k = 5
    relevant = torch.tensor([[False, True, False, True]])
    valid = torch.ones_like(relevant)
    w = delta_mrr_weights(ranks, relevant, valid, cutoff=5)[0]
    expected = torch.zeros(4, 4)
    expected[1, 0], expected[1, 2] = abs(1 / 2 - 1), abs(1 / 2 - 1 / 3)
    expected[3, 0], expected[3, 2] = 1.0, 1 / 3
    torch.testing.assert_close(w, expected)
    scores = torch.tensor([[0.5, 0.4, 0.3, 0.1]])
    pairs = pair_mask(relevant, valid)
    hand = (0.5 * math.log1p(math.exp(1)) + (1 / 6) * math.log1p(math.exp(-1))
            + 1.0 * math.log1p(math.exp(4)) + (1 / 3) * math.log1p(math.exp(2)))
    assert adore_loss(scores, w[None], pairs, 0.1, "sum").item() == pytest.approx(hand, rel=1e-5)
    assert adore_loss(scores, w[None], pairs, 0.1).item() == pytest.approx(hand / 4, rel=1e-5)  # 2 x 2 pairs


def official_adore_loss(scores: np.ndarray, labels: np.ndarray, metric_cut: int) -> float:
    """A line-by-line port of DRhard adore/train.py's loss (sigma = 1) for retrieved lists ``scores``."""
    loss = 0.0
    for y, target in zip(scores, labels, strict=True):
        target = target.astype(np.int32).reshape(-1, 1)
        rel_diff = target - target.T
        pos_pairs, neg_pairs = (rel_diff > 0).astype(np.float64), (rel_diff < 0).astype(np.float64)
        num_pairs = 2 * pos_pairs.sum()
        y = y.reshape(-1, 1)
        c = pos_pairs * np.log1p(np.exp(-(y - y.T))) + neg_pairs * np.log1p(np.exp(y - y.T))
        arr = 1 / np.arange(1, 1 + len(y), dtype=np.float64)
        arr[metric_cut:] = 0
        loss += (c * np.abs(arr[:, None] - arr[None, :])).sum() / num_pairs
    return loss / len(scores)


def test_adore_loss_matches_the_official_formula_on_mixed_queries() -> None:
    rng = np.random.default_rng(0)
    k = 60
    scores = rng.normal(size=(2, k))
    labels = np.zeros((2, k), dtype=bool)
    labels[0, 2] = True  # one positive, at rank 3
    labels[1, rng.choice(k, 50, replace=False)] = True  # fifty positives
    ranks = torch.arange(1, k + 1).expand(2, -1)
    relevant, valid = torch.from_numpy(labels), torch.ones(2, k, dtype=torch.bool)
    weights = delta_mrr_weights(ranks, relevant, valid, cutoff=k)
    ours = adore_loss(torch.from_numpy(scores), weights.double(), pair_mask(relevant, valid), 1.0)
    assert ours.item() == pytest.approx(official_adore_loss(scores, labels, k), rel=1e-6)
    # the 50-positive query does not dominate: the mean weighs each query once
    alone = adore_loss(torch.from_numpy(scores[:1]), weights[:1].double(), pair_mask(relevant, valid)[:1], 1.0)
    assert ours.item() == pytest.approx((alone.item() + official_adore_loss(scores[1:], labels[1:], k)) / 2)


def test_dynamic_negatives_come_from_the_real_index(tiny_built, encoder) -> None:
    ds, index, _, _ = tiny_built
    queries = ["what causes earthquakes", "how is blood sugar regulated"]
    vectors = encoder.encode_queries(queries)
    doc_row = {d: i for i, d in enumerate(ds.doc_ids)}
    batch = dynamic_candidates(index, vectors, [{"d5", "d9"}, {"d1"}], doc_row, k=3)
    expected = index.search(vectors, 3).ids
    assert batch.retrieved_ids == expected
    second = [ds.doc_ids[r] for r in batch.rows[1][batch.valid[1]].tolist()]
    assert second[:3] == expected[1] and "d1" in second  # the unretrieved positive is appended
    assert batch.ranks[1][second.index("d1")] == 4 or "d1" in expected[1]
    unretrieved = next(d for d in ds.doc_ids if d not in expected[0])
    partly = dynamic_candidates(index, vectors[:1], [{expected[0][0], unretrieved}], doc_row, k=3)
    got = [ds.doc_ids[r] for r in partly.rows[0][partly.valid[0]].tolist()]
    assert got == expected[0]  # one positive retrieved: the other is not appended (official code)


def test_dense_candidates_hand_example() -> None:
    docs = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # top 2: rows [0, 1] and [2, 1]
    batch = dense_candidates(queries, docs, [[1, 3], [0]], k=2)
    assert batch.rows[0][batch.valid[0]].tolist() == [0, 1]  # positive 1 retrieved: nothing appended
    assert batch.rows[1][batch.valid[1]].tolist() == [2, 1, 0]  # none retrieved: positive 0 appended, unranked
    assert batch.ranks[1].tolist()[:3] == [1, 2, 3] and batch.relevant[1].tolist()[:3] == [False, False, True]
    q = queries.clone().requires_grad_(True)
    loss = dense_adore_loss(q, docs, [[1, 3], [0]], k=2, temperature=1.0)
    # query 0: pair (1 rel, 0 non-rel), w = |1/2 - 1|; query 1: (0 rel, unranked) vs 2 and 1, w = 1 and 1/2
    hand = (0.5 * math.log1p(math.exp(1.0 - 0.8))
            + (1.0 * math.log1p(math.exp(1.0 - 0.0)) + 0.5 * math.log1p(math.exp(0.6 - 0.0))) / 2) / 2
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adore_keeps_the_document_side_bit_identical(tiny_built, encoder, tmp_path, tiny_dir) -> None:
    from retriever.encoders import load_sentence_transformer
    from retriever.index.store import current_version_dir
    from training.adore import train_adore

    _, _, manifest, path = tiny_built
    folder = path.parent
    index_file = current_version_dir(folder) / "index.faiss"
    before_hash = file_hash(index_file)
    doc_state = {k: v.clone() for k, v in encoder.document.model.state_dict().items()}
    config = TrainConfig(method="adore", index=str(folder), data=str(tiny_dir), batch_size=2, adore_top_k=5,
                         epochs=2, learning_rate=1e-4, output=tmp_path / "adore", query_max_seq_length=32)
    summary = train_adore(config)
    assert summary["steps"] >= 4
    assert file_hash(index_file) == before_hash  # the old version is untouched
    new_dir = current_version_dir(folder)
    assert new_dir != index_file.parent and file_hash(new_dir / "index.faiss") == before_hash
    _, new_manifest = load_index(folder, use_gpu=False)
    assert new_manifest.model_fingerprint == manifest.model_fingerprint and new_manifest.query_model_id
    reloaded_doc = load_sentence_transformer("default").state_dict()
    for name, tensor in doc_state.items():
        assert torch.equal(reloaded_doc[name], tensor), name
    query_tower = load_sentence_transformer(new_manifest.query_model_id).state_dict()
    moved = any(not torch.equal(query_tower[n], t) for n, t in doc_state.items())
    assert moved == (summary["best_step"] > 0)  # the tower of the best dev evaluation (step 0: the start model)
    log = [json.loads(line) for line in (tmp_path / "adore" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and "eval_dev_cosine_ndcg@10" in log[0] and any("loss" in r for r in log)
    budgeted = train_adore(config.model_copy(update={"output": tmp_path / "budget", "update_index": False}),
                           time_budget_s=1e-9)
    assert budgeted["steps"] == summary["steps"] // 2 and not budgeted["stopped_early"]  # stopped after epoch 1


def test_mine_from_index_hybrid_is_the_fused_ranking_and_encodes_the_queries_once(tiny_built, encoder,
                                                                                  monkeypatch) -> None:
    from retriever.errors import DataError
    from retriever.search import rank_queries
    from training.negatives import mine_from_index

    ds, index, manifest, path = tiny_built
    queries = [ds.queries[q] for q in ds.qrels("train")]
    expected = mine_hard_negatives(ds, "train", index, manifest, encoder, MiningParams(top_k=5),
                                   ranking=rank_queries(path.parent, index, manifest, encoder, queries, 55, "hybrid"))
    calls = []
    real = encoder.encode_queries
    monkeypatch.setattr(encoder, "encode_queries", lambda texts: calls.append(len(texts)) or real(texts))
    hybrid = mine_from_index(ds, "train", path.parent, index, manifest, encoder, MiningParams(top_k=5), mode="hybrid")
    assert hybrid.negatives == expected.negatives and hybrid.params["mode"] == "hybrid"
    assert calls == [len(queries)]  # the fused ranking encodes them; mining does not encode them again
    dense = mine_from_index(ds, "train", path.parent, index, manifest, encoder, MiningParams(top_k=5))
    plain = mine_hard_negatives(ds, "train", index, manifest, encoder, MiningParams(top_k=5))
    assert dense.negatives == plain.negatives
    assert dense.params["mode"] == "dense" and dense.negatives != hybrid.negatives
    with pytest.raises(DataError, match="cosine margins"):
        mine_from_index(ds, "train", path.parent, index, manifest, encoder, MiningParams(max_score=0.5), mode="hybrid")


def test_hard_negatives_bench_mines_each_mode_into_its_own_file_once(tiny_built, encoder, monkeypatch,
                                                                      tmp_path) -> None:
    import bench.hard_negatives as bench

    ds, index, manifest, path = tiny_built
    monkeypatch.setattr(bench, "MODELS", tmp_path / "models")
    (tmp_path / "models").mkdir()
    dense_path, _ = bench.mine_once(ds, "tiny", "dense", 42, path.parent, index, manifest, encoder)
    hybrid_path, _ = bench.mine_once(ds, "tiny", "hybrid", 42, path.parent, index, manifest, encoder)
    assert (dense_path.name, hybrid_path.name) == ("tiny-negatives.json", "tiny-negatives-hybrid.json")
    assert read_negatives(hybrid_path).params["mode"] == "hybrid"
    assert read_negatives(dense_path).params["mode"] == "dense"
    monkeypatch.setattr(bench, "mine_from_index", lambda *a, **k: pytest.fail("mined again"))
    assert bench.mine_once(ds, "tiny", "hybrid", 42, path.parent, index, manifest, encoder)[0] == hybrid_path
    assert bench.star_folder("tiny", "star", "hybrid") == "tiny-star-hybrid-mined"
    assert bench.star_folder("tiny", "star", "dense") == "tiny-star"


def test_hard_negatives_bench_refuses_an_unknown_mine_mode() -> None:
    import typer
    from typer.testing import CliRunner

    import bench.hard_negatives as bench

    app = typer.Typer()
    app.command()(bench.main)
    result = CliRunner().invoke(app, ["--mine-mode", "bm25"])
    assert result.exit_code == 2 and "--mine-mode must be one of dense, hybrid" in result.output


def test_hard_negatives_bench_never_records_a_reused_model_under_another_budget(tmp_path) -> None:
    import typer

    from bench.hard_negatives import check_budget

    (tmp_path / "train_config.json").write_text(json.dumps({"epochs": 0.5, "max_steps": -1}))
    check_budget(tmp_path, 0.5, -1, "pair")  # a config written before --rows existed trained on pairs
    with pytest.raises(typer.BadParameter, match="trained for 0.5 epochs"):
        check_budget(tmp_path, 3.0, -1, "pair")
    with pytest.raises(typer.BadParameter, match="rows pair"):
        check_budget(tmp_path, 0.5, -1, "query")


def test_hard_negatives_bench_pairs_a_row_with_zero_shot_and_the_dense_mined_run(monkeypatch, tmp_path) -> None:
    from types import SimpleNamespace

    import bench.hard_negatives as bench

    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 1.0, "d9": 0.5}, "q2": {"d9": 1.0, "d2": 0.5}}  # nDCG@10 1 and 1/log2(3)
    zero = {"q1": {"d9": 1.0, "d1": 0.5}, "q2": {"d9": 1.0, "d2": 0.5}}
    recorded = {}
    monkeypatch.setattr(bench, "evaluate_index", lambda *a, **k: SimpleNamespace(run=run, metrics={"ndcg@10": 0.8}))
    monkeypatch.setattr(bench, "record", lambda dataset, split, method, label, metrics, seconds: recorded.update(
        label=label, metrics=metrics))
    monkeypatch.setattr(bench, "save_run", lambda run, name: recorded.update(run_name=name))
    summary = {"train_seconds": 1.0, "samples_per_s": 1.0, "steps": 2}
    bench.evaluate_and_record(SimpleNamespace(qrels=lambda split: qrels), "tiny", "star", None, None, summary, {},
                              variant=" (hybrid-mined)", baseline=zero, run_name="tiny-star-hybrid-mined-test",
                              compare={"dense_mined": run})
    metrics = recorded["metrics"]
    assert metrics["delta_vs_zero_shot"] == pytest.approx((1 - 1 / math.log2(3)) / 2)
    assert metrics["delta_vs_dense_mined"] == 0.0 and metrics["p_vs_dense_mined"] == "1"
    assert recorded["label"] == "all-MiniLM-L6-v2+star (hybrid-mined)"
    assert recorded["run_name"] == "tiny-star-hybrid-mined-test"


def test_hard_negatives_bench_names_a_filtered_pool_apart_and_pairs_it_with_the_unfiltered_run(
        monkeypatch, tmp_path) -> None:
    import bench.hard_negatives as bench

    monkeypatch.setattr(bench, "MODELS", tmp_path / "models")
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    pool = bench.Pool(skip_top=30)
    assert (pool.suffix, pool.label) == ("-skip30", ", skip top 30")
    assert bench.Pool().suffix == "" and bench.Pool(relative_margin=0.95).suffix == "-margin0.95"
    assert bench.Pool(relative_margin=0.95, reference="highest").suffix == "-margin0.95-highest"
    assert bench.Pool(relative_margin=0.95, reference="highest").label == ", margin 0.95 x highest positive"
    assert bench.negatives_path("tiny", "dense", pool.suffix).name == "tiny-negatives-skip30.json"
    assert bench.negatives_path("tiny", "hybrid", pool.suffix).name == "tiny-negatives-hybrid-skip30.json"
    assert bench.star_folder("tiny", "star", "dense", pool.suffix) == "tiny-star-skip30"
    assert bench.comparison_runs("tiny", "star", "dense", pool.suffix) == {}  # nothing saved yet
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny-star-test.trec").write_text("q1 Q0 d1 1 1.0 tiny-star\n")
    assert bench.comparison_runs("tiny", "star", "dense", pool.suffix) == {"unfiltered": {"q1": {"d1": 1.0}}}
    assert bench.comparison_runs("tiny", "star", "dense") == {}  # the unfiltered row is not paired with itself
    assert bench.adore_variant("lr=1e-05", pool.label) == " (lr=1e-05, skip top 30)"
    assert bench.adore_variant("", "") == ""


def test_hard_negatives_bench_mines_a_filtered_pool_into_its_own_file(tiny_built, encoder, monkeypatch,
                                                                      tmp_path) -> None:
    import bench.hard_negatives as bench

    ds, index, manifest, path = tiny_built
    monkeypatch.setattr(bench, "MODELS", tmp_path / "models")
    (tmp_path / "models").mkdir()
    plain, _ = bench.mine_once(ds, "tiny", "dense", 42, path.parent, index, manifest, encoder)
    skipped, _ = bench.mine_once(ds, "tiny", "dense", 42, path.parent, index, manifest, encoder, skip_top=1)
    assert skipped.name == "tiny-negatives-skip1.json" and read_negatives(skipped).params["skip_top"] == 1
    full, cut = read_negatives(plain).negatives, read_negatives(skipped).negatives
    assert all(cut[q] == full[q][1:] for q in full)  # top 200 of a small corpus: only the first one goes


def test_negative_filter_statistics_hand_example() -> None:
    from bench.negative_filters import pool_statistics

    negatives = {"q1": ["d1", "d2", "d3", "d4"], "q2": []}
    hidden = {"q1": {"d2"}, "q2": {"d9"}}
    cosines = {"q1": {"d1": 0.8, "d2": 0.6, "d3": 0.4, "d4": 0.2}, "q2": {}}
    stats = pool_statistics(negatives, hidden, cosines)
    assert stats["false_negative_rate"] == pytest.approx(1 / 4)
    assert stats["false_negative_rate_top30"] == pytest.approx(1 / 4)
    assert stats["negatives_per_query"] == 2.0 and stats["queries_without_negatives"] == 1
    assert stats["mean_negative_cosine"] == pytest.approx(0.5)
