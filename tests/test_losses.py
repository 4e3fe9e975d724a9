import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.losses import ContrastiveLoss, KnownPositives, MWLoss, infonce_from_scores, mw_from_scores

SCORES = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.3]], dtype=torch.float64)
POS = torch.tensor([0, 1])


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_infonce_matches_hand_computation() -> None:
    none = torch.zeros_like(SCORES, dtype=torch.bool)
    expected = ((-9 + math.log(math.exp(9) + math.exp(2) + math.exp(5)))
                + (-8 + math.log(math.exp(1) + math.exp(8) + math.exp(3)))) / 2
    assert infonce_from_scores(SCORES, POS, none, 0.1).item() == pytest.approx(expected, rel=1e-9)
    known = none.clone()
    known[0, 1] = True  # document 1 is also a labelled positive of query 0: never its negative
    masked = ((-9 + math.log(math.exp(9) + math.exp(5)))
              + (-8 + math.log(math.exp(1) + math.exp(8) + math.exp(3)))) / 2
    assert infonce_from_scores(SCORES, POS, known, 0.1).item() == pytest.approx(masked, rel=1e-9)


def test_mw_matches_hand_computation() -> None:
    positives = torch.tensor([0.9, 0.8], dtype=torch.float64)
    negatives = torch.tensor([0.2, 0.5, 0.1, 0.3], dtype=torch.float64)
    expected = np.mean([sp((n - p) / 0.1) for p in (0.9, 0.8) for n in (0.2, 0.5, 0.1, 0.3)])
    assert mw_from_scores(positives, negatives, 0.1).item() == pytest.approx(expected, rel=1e-9)


def _diagonal_positives(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.arange(b)
    excluded = torch.zeros((b, b + 1), dtype=torch.bool)
    excluded[pos, pos] = True
    return pos, excluded


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 5).flatmap(lambda b: st.tuples(
        st.lists(st.floats(-1, 1), min_size=b * (b + 1), max_size=b * (b + 1)),
        st.lists(st.floats(-0.5, 0.5), min_size=b, max_size=b),
    ))
)
def test_lemma1_query_offsets_leave_infonce_unchanged(case) -> None:
    flat, offsets = case
    b = len(offsets)
    scores = torch.tensor(flat, dtype=torch.float64).reshape(b, b + 1)
    g = torch.tensor(offsets, dtype=torch.float64)[:, None]
    pos, excluded = _diagonal_positives(b)
    before = infonce_from_scores(scores, pos, excluded, 0.05)
    after = infonce_from_scores(scores + g, pos, excluded, 0.05)
    assert after.item() == pytest.approx(before.item(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(25))
def test_lemma1_query_offsets_change_mw(seed: int) -> None:
    # Generic scores (continuous draws): a per-query offset moves a query's positive relative to the
    # negatives of other queries, so the MW loss changes, while a global offset does not.
    rng = np.random.default_rng(seed)
    b = int(rng.integers(2, 6))
    scores = torch.tensor(rng.uniform(-1, 1, (b, b + 1)))
    g = torch.tensor(rng.uniform(-0.5, 0.5, (b, 1)))
    pos, excluded = _diagonal_positives(b)

    def mw(s: torch.Tensor) -> float:
        return mw_from_scores(s[pos, pos], s[~excluded], 0.1).item()

    assert mw(scores + g) != pytest.approx(mw(scores), rel=1e-6)
    assert mw(scores + 0.3) == pytest.approx(mw(scores), rel=1e-9)


def test_known_positives_mask_other_queries_labels() -> None:
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    rows = [("q1", ["d1", "n1"]), ("q2", ["d2", "d3"]), ("q3", ["d3", "n2"])]
    known = KnownPositives(qrels, rows)
    mask = known.mask(torch.tensor([0, 1]), torch.tensor([0, 1]), n_columns=2).numpy()
    # columns: positives (d1, d2) then negatives (n1, d3)
    assert mask.tolist() == [[True, False, False, True], [False, True, False, False]]


def features(model, texts):
    return model.tokenize(texts)


@pytest.mark.parametrize("loss_cls", [ContrastiveLoss, MWLoss])
def test_gradients_reach_the_encoder_and_known_positives_are_masked(loss_cls, tiny_model_dir) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d2": 1}}
    rows = [("q1", ["d1"]), ("q2", ["d2"])]
    loss = loss_cls(model, known=KnownPositives(qrels, rows), temperature=0.1)
    anchors, docs = ["first query", "second query"], ["first doc text", "second doc text"]
    value = loss([features(model, anchors), features(model, docs)], torch.tensor([0, 1]))
    value.backward()
    grad = model[0].auto_model.embeddings.word_embeddings.weight.grad
    assert grad is not None and grad.abs().sum() > 0

    with torch.no_grad():
        q = torch.nn.functional.normalize(torch.tensor(model.encode(anchors)), dim=-1).double()
        d = torch.nn.functional.normalize(torch.tensor(model.encode(docs)), dim=-1).double()
        s = q @ d.T
        if loss_cls is MWLoss:  # d2 is q1's known positive: only (q2, d1) is a negative
            expected = mw_from_scores(torch.diagonal(s), s[1:, :1].reshape(-1), 0.1)
        else:
            expected = ((-s[0, 0] / 0.1 + torch.logsumexp(s[0, :1] / 0.1, 0))
                        + (-s[1, 1] / 0.1 + torch.logsumexp(s[1] / 0.1, 0))) / 2
    assert value.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


def test_mw_batch_normalisation_sums_over_negatives() -> None:
    positives = torch.tensor([0.9, 0.8], dtype=torch.float64)
    negatives = torch.tensor([0.2, 0.5, 0.1], dtype=torch.float64)
    per_pair = mw_from_scores(positives, negatives, 0.1, "pairs").item()
    assert mw_from_scores(positives, negatives, 0.1, "batch").item() == pytest.approx(per_pair * 3, rel=1e-9)


def test_cet_star_trains_both_models_without_crossing_gradients(tiny_model_dir) -> None:
    from sentence_transformers import SentenceTransformer

    from training.losses.cet import cet_weights
    from training.losses.cet_star import CETStarLoss
    from training.losses.star import star_from_scores

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    rows = [("q1", ["d1", "d3"]), ("q2", ["d2", "d4"])]
    loss = CETStarLoss(model, known=KnownPositives(qrels, rows), temperature=0.1, debias_ratio=2.0,
                       learning_rate=1e-3)
    selection_before = {k: v.clone() for k, v in loss.selection.state_dict().items()}
    texts = [["first query", "second query"], ["doc one", "doc two"], ["hard one", "hard two"]]
    value = loss([features(model, t) for t in texts], torch.tensor([0, 1]))
    value.backward()
    assert all(p.grad is None for p in loss.selection.parameters())  # R's loss sends nothing into S
    assert model[0].auto_model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    changed = [k for k, v in loss.selection.state_dict().items() if not torch.equal(v, selection_before[k])]
    assert changed  # S took its own step in the same forward

    logits = torch.tensor([[2.0, 1.0, 0.0]])
    valid = torch.tensor([[False, True, True]])
    weights = cet_weights(torch.tensor([[0.0, 2.0, -2.0]]), 2.0)
    expected = (weights[0, 1] * sp(-1.0) + weights[0, 2] * sp(-2.0)) / 2
    value = star_from_scores(logits, torch.tensor([0]), ~valid, 1.0, weights).item()
    assert value == pytest.approx(float(expected))


def test_cet_weights_at_initialisation_stay_in_the_official_range(minilm, tiny_dir) -> None:
    """A real batch (tiny corpus, MiniLM's own hardest non-positive as the mined negative), default T."""
    import numpy as np

    from retriever.data import load_beir
    from training.examples import build_rows
    from training.losses.cet_star import CETStarLoss

    data = load_beir(tiny_dir)
    qrels = data.qrels("train")
    docs = minilm.encode(data.doc_texts(data.doc_ids), normalize_embeddings=True)
    negatives = {}
    for q in qrels:
        ranked = np.argsort(-(docs @ minilm.encode(data.queries[q], normalize_embeddings=True)))
        negatives[q] = [data.doc_ids[i] for i in ranked if data.doc_ids[i] not in qrels[q]]
    rows = build_rows(data, "train", negatives, n_negatives=1, negative_sampling="top")
    loss = CETStarLoss(minilm, known=rows.known, selection=minilm)  # S: the same base checkpoint
    columns = ["anchor", "positive", "negative_1"]
    batch = [features(minilm, rows.columns[c]) for c in columns]
    w_r, w_s = loss.pair_weights(batch, torch.tensor(rows.columns["label"]))
    size = len(rows)
    for weights in (w_r, w_s):
        hard = weights[:, size:]
        assert hard.median() < 5 and hard.max() < 50
        assert torch.equal(weights[:, :size], torch.ones(size, size))  # in-batch pairs carry no CET weight
    assert loss.debias_ratio == 10.0
