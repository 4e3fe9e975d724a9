"""Trainable reranker scorers with one interface: a batch of (query, document) pairs in, scores and
yes/no log-probabilities out, with autograd."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from retriever.atomic import atomic_write_json
from retriever.encoders.text_encoder import resolve_model_path
from retriever.errors import ModelError
from retriever.rerank.base import RERANKER_FILE, read_settings
from retriever.rerank.causal_lm import (
    PROMPT_TEMPLATE,
    YesNoPrompter,
    answer_logits,
    answer_token_ids,
    pad_left,
    two_way_log_probs,
)
from retriever.rerank.lm_weights import resolve_causal_lm


@dataclass
class PairScores:
    """``scores``: the ranking score (what CL and the pairwise loss read); ``log_p_yes``/``log_p_no``: what
    the SFT loss reads. All ``[N]``."""

    scores: Tensor
    log_p_yes: Tensor
    log_p_no: Tensor


class CrossEncoderScorer(nn.Module):
    """A BERT-style encoder with a new one-logit head (``AutoModelForSequenceClassification``), saved as a
    folder that sentence-transformers' ``CrossEncoder`` loads."""

    arch = "cross-encoder"

    def __init__(self, name_or_path: str, max_length: int = 256) -> None:
        super().__init__()
        target, _ = resolve_model_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target)
            self.model = AutoModelForSequenceClassification.from_pretrained(target, num_labels=1,
                                                                            dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load '{name_or_path}': {str(exc).splitlines()[0][:160]}") from None
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, queries: list[str], documents: list[str]) -> PairScores:
        features = self.tokenizer(queries, documents, padding=True, truncation=True, max_length=self.max_length,
                                  return_tensors="pt").to(self.device)
        scores = self.model(**features).logits[:, 0].float()
        return PairScores(scores, nn.functional.logsigmoid(scores), nn.functional.logsigmoid(-scores))

    def save(self, folder: Path) -> None:
        self.model.config.sentence_transformers = {"activation_fn": "torch.nn.modules.linear.Identity"}
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        atomic_write_json(Path(folder) / RERANKER_FILE, {"arch": self.arch, "max_length": self.max_length})


class CausalLMScorer(nn.Module):
    """A causal LM answering yes/no (see :mod:`retriever.rerank.causal_lm`): the log-probabilities of both
    answers under the two-way {yes, no} softmax (what SFT reads), and a ranking score: ``l_yes - l_no``, or
    with ``score_kind = "yes"`` the yes logit alone, the CL score of arXiv 2510.14824 (set for CL training
    and saved, so that inference ranks by it too)."""

    arch = "causal-lm"

    def __init__(self, name_or_path: str, max_length: int = 256, template: str = PROMPT_TEMPLATE) -> None:
        super().__init__()
        settings = read_settings(name_or_path)
        target = resolve_causal_lm(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target)
            self.model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load causal LM '{name_or_path}': {str(exc).splitlines()[0][:160]}") from None
        self.template = settings.get("template", template)
        self.answers = tuple(settings.get("answers", ("yes", "no")))
        self.max_length = max_length
        self.prompter = YesNoPrompter(self.tokenizer, self.template, max_length)
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer, *self.answers)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.no_id
        self.score_kind = settings.get("score", "yes-no")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, queries: list[str], documents: list[str]) -> PairScores:
        ids, mask, positions = pad_left(self.prompter(queries, documents), self.pad_id, self.device)
        logits = answer_logits(self.model, ids, mask, positions)
        log_p_yes, log_p_no = two_way_log_probs(logits, self.yes_id, self.no_id)
        yes = logits[:, self.yes_id]
        scores = yes if self.score_kind == "yes" else yes - logits[:, self.no_id]
        return PairScores(scores, log_p_yes, log_p_no)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(str(folder))
        self.tokenizer.save_pretrained(str(folder))
        atomic_write_json(Path(folder) / RERANKER_FILE, {"arch": self.arch, "template": self.template,
                                                         "answers": list(self.answers), "max_length": self.max_length,
                                                         "score": self.score_kind})


HEAD_PREFIXES = ("classifier.", "score.")  # the new heads of Hugging Face's *ForSequenceClassification


def parameter_groups(scorer: nn.Module, learning_rate: float, head_learning_rate: float) -> list[dict]:
    """AdamW groups: a cross-encoder's freshly initialised head gets its own (higher) learning rate; the
    pretrained body, and every parameter of a causal LM, the base rate."""
    named = list(scorer.model.named_parameters()) if isinstance(scorer, CrossEncoderScorer) else []
    head = [p for n, p in named if n.startswith(HEAD_PREFIXES)]
    head_ids = {id(p) for p in head}
    body = [p for p in scorer.parameters() if id(p) not in head_ids]
    groups = [{"params": body, "lr": learning_rate}]
    if head:
        groups.append({"params": head, "lr": head_learning_rate})
    return groups


SCORERS: dict[str, type[CrossEncoderScorer] | type[CausalLMScorer]] = {
    CrossEncoderScorer.arch: CrossEncoderScorer,
    CausalLMScorer.arch: CausalLMScorer,
}
"""The trainable class of each reranker architecture (its inference class: ``retriever.rerank.registry``)."""


def make_scorer(arch: str, name_or_path: str, max_length: int) -> CrossEncoderScorer | CausalLMScorer:
    if arch not in SCORERS:
        raise ModelError(f"no trainable reranker for architecture '{arch}': one of {', '.join(SCORERS)}")
    return SCORERS[arch](name_or_path, max_length)
