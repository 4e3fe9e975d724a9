"""Rerankers: yes/no token choice, loss values, gradient weights, reranking invariants and training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.losses import CETPairLoss, ListwiseContrastiveLoss, PointwiseSFTLoss, cet_weights

CHAT_TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<s> assistant : {% endif %}")
WORDS = ["<pad>", "<unk>", "<s>", "</s>", "user", "assistant", ":", "Query", "Document", "Is", "the", "document",
         "relevant", "to", "query", "?", "Answer", "yes", "or", "no", ".", "vitamin", "d", "cancer", "tower",
         "paris", "risk", "of"]


def make_tiny_causal_lm(folder: Path) -> Path:
    """A 1-layer Llama over a whitespace word vocabulary, with a chat template: no downloads."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def test_yes_no_token_ids_match_the_tokenizer(tiny_lm):
    from transformers import AutoTokenizer

    from retriever.errors import ModelError
    from retriever.rerank.causal_lm import answer_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    assert answer_token_ids(tokenizer) == (WORDS.index("yes"), WORDS.index("no"))
    with pytest.raises(ModelError, match="tokens"):
        answer_token_ids(tokenizer, yes="yes or")


def test_smollm2_answer_tokens_when_exported():
    from transformers import AutoTokenizer

    from retriever.rerank.causal_lm import answer_token_ids
    from retriever.rerank.lm_weights import model_cache

    folder = model_cache() / "smollm2-135m-instruct"
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("SmolLM2 not exported on this machine")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    yes, no = answer_token_ids(tokenizer)
    assert tokenizer.decode([yes]) == "yes" and tokenizer.decode([no]) == "no"


def test_causal_lm_score_is_two_way_softmax_and_padding_free(tiny_lm):
    from retriever.rerank.causal_lm import CausalLMReranker

    reranker = CausalLMReranker(str(tiny_lm), batch_size=4, device="cpu")
    queries = ["vitamin d", "vitamin d cancer risk", "paris"]
    docs = ["vitamin d of cancer risk", "tower", "the tower of paris . " * 5]
    batched = reranker.score_pairs(queries, docs)
    alone = np.array([reranker.score_pairs([q], [d])[0] for q, d in zip(queries, docs, strict=True)])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    ids = torch.tensor([reranker.prompter([queries[0]], [docs[0]])[0]])
    with torch.no_grad():
        logits = reranker.model(input_ids=ids).logits[0, -1]
    expected = torch.softmax(logits[[reranker.yes_id, reranker.no_id]], dim=0)[0]
    assert batched[0] == pytest.approx(float(expected), abs=1e-5)


def test_document_is_truncated_to_the_length_limit(tiny_lm):
    from transformers import AutoTokenizer

    from retriever.rerank.causal_lm import YesNoPrompter

    prompter = YesNoPrompter(AutoTokenizer.from_pretrained(tiny_lm), max_length=60, query_max_tokens=8)
    (ids,) = prompter(["vitamin d"], ["cancer " * 500])
    assert len(ids) <= 60
    assert ids[-len(prompter.tail):] == prompter.tail  # the answer position survives truncation


def test_sft_loss_matches_hand_computation():
    log_p_yes = torch.log(torch.tensor([[0.8, 0.3]]))
    log_p_no = torch.log(torch.tensor([[0.1, 0.6]]))
    labels = torch.tensor([[1.0, 0.0]])
    loss = PointwiseSFTLoss()(log_p_yes, log_p_no, labels)
    assert float(loss) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2, rel=1e-6)
    weights = PointwiseSFTLoss().gradient_weights(log_p_yes, log_p_no, labels)
    np.testing.assert_allclose(weights.numpy(), [[0.2, 0.4]], rtol=1e-6)
    balanced = PointwiseSFTLoss(pos_weight=3.0)
    assert float(balanced(log_p_yes, log_p_no, labels)) == pytest.approx(-(3 * math.log(0.8) + math.log(0.6)) / 2)
    np.testing.assert_allclose(balanced.gradient_weights(log_p_yes, log_p_no, labels).numpy(), [[0.6, 0.4]],
                               rtol=1e-6)
    s = torch.tensor([[0.0]])  # cross-encoder logit 0 -> BCE = log 2
    bce = PointwiseSFTLoss()(torch.nn.functional.logsigmoid(s), torch.nn.functional.logsigmoid(-s), torch.ones(1, 1))
    assert float(bce) == pytest.approx(math.log(2))


def test_lm_sft_loss_ignores_every_non_answer_logit():
    from retriever.rerank.causal_lm import two_way_log_probs

    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    yes_id, no_id = 7, 11
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    shifted = logits + 5.0
    shifted[:, [yes_id, no_id]] = logits[:, [yes_id, no_id]]  # a constant added to every non-answer logit
    losses = [PointwiseSFTLoss()(*two_way_log_probs(x, yes_id, no_id), labels) for x in (logits, shifted)]
    assert float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-6)
    log_p_yes, log_p_no = two_way_log_probs(logits, yes_id, no_id)
    torch.testing.assert_close(log_p_yes.exp() + log_p_no.exp(), torch.ones(4))
    torch.testing.assert_close(log_p_yes - log_p_no, logits[:, yes_id] - logits[:, no_id])


def test_lm_cl_scores_by_the_yes_logit_in_training_and_inference(tiny_lm, tmp_path):
    from retriever.rerank.causal_lm import CausalLMReranker
    from training.rerank_models import CausalLMScorer

    scorer = CausalLMScorer(str(tiny_lm), max_length=200)
    queries, docs = ["vitamin d", "paris"], ["vitamin d of cancer risk", "tower"]
    with torch.no_grad():
        two_way = scorer(queries, docs)
        scorer.score_kind = "yes"
        yes = scorer(queries, docs)
    torch.testing.assert_close(two_way.log_p_yes.exp() + two_way.log_p_no.exp(), torch.ones(2))
    torch.testing.assert_close(yes.log_p_yes, two_way.log_p_yes)  # SFT reads the same two-way softmax
    ids = torch.tensor([scorer.prompter([queries[0]], [docs[0]])[0]])
    with torch.no_grad():
        logits = scorer.model(input_ids=ids).logits[0, -1]
    assert float(yes.scores[0]) == pytest.approx(float(logits[scorer.yes_id]), abs=1e-4)
    assert float(two_way.scores[0]) == pytest.approx(float(logits[scorer.yes_id] - logits[scorer.no_id]), abs=1e-4)
    scorer.save(tmp_path / "cl-lm")
    served = CausalLMReranker(str(tmp_path / "cl-lm"), batch_size=2, device="cpu").score_pairs(queries, docs)
    np.testing.assert_allclose(served, yes.scores.numpy(), atol=1e-4)  # inference ranks as CL trained


def test_listwise_cl_matches_hand_computation_and_couples_weights():
    scores = torch.tensor([[2.0, 0.0, 0.0]])
    loss = ListwiseContrastiveLoss(1.0)(scores)
    assert float(loss) == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)), rel=1e-6)
    p = np.exp([2, 0, 0]) / np.exp([2, 0, 0]).sum()
    np.testing.assert_allclose(ListwiseContrastiveLoss(1.0).gradient_weights(scores).numpy()[0],
                               [1 - p[0], p[1], p[2]], rtol=1e-6)
    more_easy = torch.tensor([[2.0, 1.0] + [0.0] * 10])
    fewer_easy = torch.tensor([[2.0, 1.0, 0.0]])
    hard_weight = lambda s: float(ListwiseContrastiveLoss(1.0).gradient_weights(s)[0, 1])  # noqa: E731
    assert hard_weight(more_easy) < hard_weight(fewer_easy)  # easy negatives shrink the hard one's weight


def test_cet_weights_and_no_gradient_into_the_other_model():
    other = torch.tensor([[5.0, 0.0, 2.0]], requires_grad=True)
    weights = cet_weights(other[:, 1:], 2.0)
    expected = [1 / (1 - 1 / (1 + math.exp(-0.0))), 1 / (1 - 1 / (1 + math.exp(-1.0)))]
    np.testing.assert_allclose(weights.numpy()[0], expected, rtol=1e-6)
    assert not weights.requires_grad
    scores = torch.tensor([[1.0, 0.5, -0.5]], requires_grad=True)
    loss = CETPairLoss(2.0)(scores, other)
    loss.backward()
    assert other.grad is None and scores.grad is not None
    pair = [math.log1p(math.exp(-0.5)), math.log1p(math.exp(-1.5))]
    assert float(loss) == pytest.approx((expected[0] * pair[0] + expected[1] * pair[1]) / 2, rel=1e-6)


def test_rerank_run_never_drops_or_duplicates():
    from retriever.rerank import rerank_run

    rng = np.random.default_rng(0)

    class Random:
        name = "random"

        def score_pairs(self, queries, documents):
            return rng.standard_normal(len(queries)).astype(np.float32)

    run = {f"q{i}": {f"d{j}": float(rng.random()) for j in rng.choice(50, 30, replace=False)} for i in range(5)}
    texts = {f"d{j}": f"text {j}" for j in range(50)}
    reranked = rerank_run(Random(), {q: q for q in run}, run, texts, depth=10)
    for q, hits in run.items():
        assert set(reranked[q]) == set(hits) and len(reranked[q]) == len(hits)
        order = sorted(reranked[q], key=reranked[q].__getitem__, reverse=True)
        first_stage = sorted(hits, key=hits.__getitem__, reverse=True)
        assert set(order[:10]) == set(first_stage[:10])
        assert order[10:] == first_stage[10:]


def test_hidden_positives_never_reach_training_labels(tiny_dir, tmp_path):
    from retriever.data import load_dataset
    from retriever.data.derive import false_negative_rate, hide_positives, read_hidden_positives
    from training.rerank_data import build_groups

    original = load_dataset(str(tiny_dir))
    folder = hide_positives(original, tmp_path / "tiny-hidden50", fraction=0.5, seed=1)
    derived = load_dataset(str(folder))
    hidden = read_hidden_positives(folder)
    hidden_pairs = {(q, d) for q, docs in hidden.items() for d in docs}
    visible = {(q, d) for q, docs in derived.file_qrels["train"].items() for d in docs}
    everything = {(q, d) for q, docs in original.file_qrels["train"].items() for d, r in docs.items() if r > 0}
    assert hidden_pairs and not hidden_pairs & visible and hidden_pairs | visible == everything
    assert derived.file_qrels["test"] == original.file_qrels["test"]
    negatives = {q: [d for d in original.doc_ids if (q, d) not in visible] for q in derived.qrels("train")}
    groups = build_groups(derived, "train", negatives, n_hard=2, n_easy=1, hard_pool=20, seed=0)
    positives = {(q, docs[0]) for q, docs in zip(groups.query_ids, groups.docs, strict=True)}
    assert not positives & hidden_pairs
    assert false_negative_rate(negatives, hidden) > 0


def test_reranker_training_resume_and_cet(tiny_dir, tiny_model_dir, tmp_path):
    from retriever.rerank import load_reranker
    from training.negatives import NegativesFile
    from training.rerank_config import RerankerConfig
    from training.rerank_trainer import train_reranker

    hf_dir = tiny_model_dir.parent / "hf"  # the tiny BERT with MiniLM's tokenizer
    negatives = NegativesFile("tiny", "train", "x", "y", None, {},
                              {q: [f"d{i}" for i in range(1, 13)] for q in ("q1", "q2", "q3", "q4", "q5", "q6")})
    path = negatives.save(tmp_path / "negatives.json")
    common = dict(model=str(hf_dir), data=str(tiny_dir), negatives_file=path, n_hard=2, n_easy=1, batch_size=2,
                  max_length=32, save_steps=1)
    first = train_reranker(RerankerConfig(objective="cl", output=tmp_path / "cl", max_steps=2, **common))
    assert first["steps"] == 2
    resumed = train_reranker(RerankerConfig(objective="cl", output=tmp_path / "cl", max_steps=3, resume=True, **common))
    assert resumed["steps"] == 3
    rows = [json.loads(line) for line in (tmp_path / "cl" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    reranker = load_reranker(str(tmp_path / "cl"))
    assert reranker.model.max_length == 32  # scored at the length it was trained with
    assert reranker.score_pairs(["a query"], ["a document"]).shape == (1,)
    assert (tmp_path / "cl" / "gradient_weights.png").is_file()

    train_reranker(RerankerConfig(objective="pair", debias="cet", output=tmp_path / "cet", max_steps=2, **common))
    from safetensors.torch import load_file

    start = load_file(str(hf_dir / "model.safetensors"))
    selection = load_file(str(tmp_path / "cet" / "selection" / "model.safetensors"))
    key = next(k for k in selection if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(selection[key], start[key.removeprefix("bert.")])  # the selection model trained too
    rows = [json.loads(line) for line in (tmp_path / "cet" / "log.jsonl").read_text().splitlines()]
    assert all("cet_weight_hard" in r for r in rows if "loss" in r)


def test_cross_encoder_head_gets_its_own_learning_rate(tiny_model_dir):
    from training.rerank_models import CrossEncoderScorer, parameter_groups

    scorer = CrossEncoderScorer(str(tiny_model_dir.parent / "hf"), max_length=32)
    body, head = parameter_groups(scorer, 2e-5, 5e-4)
    head_names = {n for n, p in scorer.model.named_parameters() if any(p is q for q in head["params"])}
    assert head_names == {"classifier.weight", "classifier.bias"} and head["lr"] == 5e-4
    assert body["lr"] == 2e-5
    assert len(body["params"]) + len(head["params"]) == len(list(scorer.parameters()))


def test_query_rows_give_one_group_per_training_query(tiny_dir):
    from retriever.data import load_dataset
    from training.rerank_data import build_groups

    data = load_dataset(str(tiny_dir))
    negatives = {q: list(data.doc_ids) for q in data.qrels("train")}
    pairs = build_groups(data, "train", negatives, n_hard=2, n_easy=1, seed=0)
    per_query = build_groups(data, "train", negatives, n_hard=2, n_easy=1, seed=0, rows="query")
    train = data.qrels("train")  # q1-q6 less the dev split's share
    assert len(pairs) == sum(len(docs) for docs in train.values()) and pairs.query_ids.count("q5") == 2
    assert sorted(per_query.query_ids) == sorted(train) and len(per_query) < len(pairs)
    for q, docs in zip(per_query.query_ids, per_query.docs, strict=True):
        assert train[q].get(docs[0], 0) > 0 and not any(train[q].get(d, 0) > 0 for d in docs[1:])
