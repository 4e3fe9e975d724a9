import numpy as np
import pytest
import torch

from retriever.data import load_beir
from retriever.filtering import (
    MAPPINGS,
    CosineAdapter,
    calibrate,
    filter_metrics,
    fit_relevance_model,
    load_relevance_model,
    pick_threshold,
)
from retriever.filtering.candidates import collect_candidates
from retriever.filtering.fit import fit_adapter
from retriever.index import load_index
from retriever.pipeline import build_index, search_texts


@pytest.mark.parametrize("mapping", list(MAPPINGS))
@pytest.mark.parametrize("seed", range(3))
def test_map_is_monotone_for_any_query(mapping: str, seed: int) -> None:
    torch.manual_seed(seed)
    adapter = CosineAdapter(16, mapping, hidden=8)
    for p in adapter.parameters():  # far from the initialisation, too
        p.data.normal_(0, 3)
    queries = torch.randn(50, 16)
    cosines = torch.linspace(-1, 1, 201).repeat(50, 1)
    relevance = adapter(queries, cosines)
    assert torch.all(relevance.diff(dim=1) >= 0)
    exact = adapter.double()  # strictness needs float64: a logit near -90 moves by ~1e-5 per step
    logits = exact.logits(queries.double(), cosines.double())
    assert torch.all(logits.diff(dim=1) >= 0)
    # strictly increasing where retrieval cosines live (a steep power map is flat near x = 0 in floats)
    assert torch.all(logits[:, 100:].diff(dim=1) > 0)
    assert relevance.min() >= 0 and relevance.max() <= 1


@pytest.mark.parametrize("seed", range(5))
def test_threshold_hits_recall_target_on_fitted_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.05
    scores = rng.normal(labels * 1.0, 1.0)
    for target in (0.5, 0.9, 0.95, 1.0):
        t = pick_threshold(scores, labels, target_recall=target)
        recall = (scores[labels] >= t).mean()
        assert recall >= target
        assert (scores[labels] > t).mean() < target or t == scores.max()  # the highest such threshold
    t = pick_threshold(scores, labels, target_recall=None, target_precision=0.3)
    kept = scores >= t
    assert (labels & kept).sum() / kept.sum() >= 0.3


def test_filter_metrics_hand_example() -> None:
    scores = np.array([[0.9, 0.8, 0.1], [0.7, 0.6, 0.5]])
    labels = np.array([[True, False, False], [False, True, False]])
    valid = np.ones_like(labels)
    m = filter_metrics(scores, labels, valid, threshold=0.65)
    # ranked: .9(+) .8 .7 .6(+) .5 .1 -> AP = (1 + 2/4)/2; R95 needs both positives: 4 kept of 6
    assert m.pr_auc == pytest.approx(0.75)
    assert m.p_at_r95 == pytest.approx(0.5) and m.filtered_at_r95 == pytest.approx(2 / 6)
    assert m.results_per_query == pytest.approx(1.5) and m.recall_at_threshold == pytest.approx(0.5)


def test_calibrate_saves_adapter_and_unadapted_index_is_flagged(tiny_dir, encoder, tmp_path) -> None:
    ds = load_beir(tiny_dir)
    index, manifest, path = build_index(ds, encoder, "tiny", root=tmp_path, use_gpu=False)
    raw = search_texts(index, encoder, ["what causes earthquakes"], k=5)
    assert raw.calibrated is False and raw.hits[0][0].relevance is None and raw.threshold is None

    report = calibrate(index, manifest, encoder, ds, k=5, save_to=path.parent)
    assert set(report.metrics) == {"filter-raw-cosine", "filter-cosine-adapter", "filter-top-ratio"}
    loaded, new_manifest = load_index(path.parent, use_gpu=False)
    assert new_manifest.adapter["threshold"] == report.threshold and new_manifest.count == 12
    model = load_relevance_model(path.parent, new_manifest)
    out = search_texts(loaded, encoder, ["what causes earthquakes"], k=5, relevance_model=model)
    rel = [h.relevance for h in out.hits[0]]
    assert out.calibrated and all(0 <= r <= 1 for r in rel) and rel == sorted(rel, reverse=True)
    filtered = search_texts(loaded, encoder, ["what causes earthquakes"], k=5, relevance_model=model,
                            min_relevance=max(rel) - 1e-9)
    assert [h.id for h in filtered.hits[0]] == [out.hits[0][0].id]


def test_adapter_learns_a_cross_query_calibration(tiny_dir, encoder, tmp_path) -> None:
    ds = load_beir(tiny_dir)
    index, _, _ = build_index(ds, encoder, "tiny", root=tmp_path, use_gpu=False)
    train = collect_candidates(index, encoder, ds, "train", 12)
    adapter = fit_adapter(train, mapping="linear", epochs=200)
    with torch.no_grad():
        probs = adapter(torch.from_numpy(train.query_vectors), torch.from_numpy(train.cosines)).numpy()
    assert probs[train.labels].mean() > 3 * probs[~train.labels & train.valid].mean()


def test_fit_relevance_model_is_what_calibrate_fits(tiny_dir, encoder, tmp_path) -> None:
    """One fit for ``retriever calibrate`` and the benches' hybrid first stages: the same adapter mapping and
    dev threshold; with target recall 0.95 and a handful of dev positives that threshold keeps all of them,
    so it is the lowest relevance of a retrieved dev positive."""
    ds = load_beir(tiny_dir)
    index, manifest, _ = build_index(ds, encoder, "tiny", root=tmp_path, use_gpu=False, lexical=False)
    fitted = fit_relevance_model(index, encoder, ds, k=5)
    assert set(fitted.candidates) == {"train", "dev"} and set(fitted.dev_pr_auc) == set(MAPPINGS)
    assert fitted.mapping == max(fitted.dev_pr_auc, key=fitted.dev_pr_auc.get) == fitted.model.info["mapping"]
    dev = fitted.candidates["dev"]
    relevance = fitted.model.relevance(dev.query_vectors, dev.cosines)
    assert 0 < dev.labels.sum() < 20
    assert fitted.model.threshold == pytest.approx(relevance[dev.labels & dev.valid].min())

    report = calibrate(index, manifest, encoder, ds, k=5)
    assert (report.mapping, report.threshold) == (fitted.mapping, pytest.approx(fitted.model.threshold))
    assert report.splits == {s: len(c.query_ids) for s, c in fitted.candidates.items()} | {"test": 4}
