"""Causal-LM rerankers that answer "yes" or "no": the score is P(yes) under a softmax over the (yes, no)
logits at the answer position.

The prompt is :data:`PROMPT_TEMPLATE` as the user turn of the model's chat template, with the generation
prompt appended, so the next token is the answer. Any Hugging Face causal LM plugs in (SmolLM2, Qwen,
Llama); the answer words must each be one token of its tokenizer, which :func:`answer_token_ids` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer

from retriever.errors import ModelError
from retriever.rerank.base import length_sorted_batches, read_settings
from retriever.rerank.lm_weights import resolve_causal_lm

PROMPT_TEMPLATE = "Query: {query}\nDocument: {document}\nIs the document relevant to the query? Answer yes or no."
_Q, _D = "\x00QUERY\x00", "\x00DOCUMENT\x00"


def answer_token_ids(tokenizer, yes: str = "yes", no: str = "no") -> tuple[int, int]:
    """Token ids of the two answers as the model would generate them right after the generation prompt."""
    ids = []
    for word in (yes, no):
        tokens = tokenizer.encode(word, add_special_tokens=False)
        if len(tokens) != 1:
            raise ModelError(f"answer '{word}' is {len(tokens)} tokens for this tokenizer; pick one-token answers")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise ModelError("the yes and no answers map to the same token")
    return ids[0], ids[1]


@dataclass
class YesNoPrompter:
    """Builds token ids for (query, document) pairs: chat-templated prompt, query truncated to
    ``query_max_tokens`` and the document to what is left of ``max_length``."""

    tokenizer: object
    template: str = PROMPT_TEMPLATE
    max_length: int = 512
    query_max_tokens: int = 64

    def __post_init__(self) -> None:
        text = self.template.format(query=_Q, document=_D)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        else:
            text = text + "\nAnswer:"
        head, rest = text.split(_Q)
        middle, tail = rest.split(_D)
        encode = lambda s: self.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        self.head, self.middle, self.tail = encode(head), encode(middle), encode(tail)
        self.doc_budget = self.max_length - len(self.head) - len(self.middle) - len(self.tail) - self.query_max_tokens
        if self.doc_budget < 8:
            raise ModelError(f"max_length {self.max_length} leaves no room for the document")

    def __call__(self, queries: list[str], documents: list[str]) -> list[list[int]]:
        q = self.tokenizer(queries, add_special_tokens=False, truncation=True, max_length=self.query_max_tokens)
        d = self.tokenizer(documents, add_special_tokens=False, truncation=True, max_length=self.doc_budget)
        head, middle, tail = self.head, self.middle, self.tail
        return [head + qi + middle + di + tail for qi, di in zip(q["input_ids"], d["input_ids"], strict=True)]


def pad_left(sequences: list[list[int]], pad_id: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """Left-padded ids, attention mask and position ids, so the answer position is the last column."""
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences])
    flat = torch.tensor([t for s in sequences for t in s], dtype=torch.long)
    cols = width - lengths.repeat_interleave(lengths) + torch.cat([torch.arange(n) for n in lengths.tolist()])
    rows = torch.arange(len(sequences)).repeat_interleave(lengths)
    ids[rows, cols] = flat
    mask[rows, cols] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def answer_logits(model, ids: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
    """Next-token logits over the whole vocabulary at the last (answer) position: ``[B, V]``."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, use_cache=False)
    return out.logits[:, -1, :].float()


def two_way_log_probs(logits: Tensor, yes_id: int, no_id: int) -> tuple[Tensor, Tensor]:
    """``(log P(yes), log P(no))`` under the softmax over the two answer logits only: what the SFT loss of
    arXiv 2510.14824 reads. Every other vocabulary logit is irrelevant to it."""
    two = torch.stack([logits[:, yes_id], logits[:, no_id]], dim=-1).log_softmax(dim=-1)
    return two[:, 0], two[:, 1]


def yes_no_scores(logits: Tensor, yes_id: int, no_id: int) -> Tensor:
    """``l_yes - l_no``: the logit of P(yes) under the two-way softmax (sigmoid of it is the score)."""
    return logits[:, yes_id] - logits[:, no_id]


class CausalLMReranker:
    """Batched, length-sorted yes/no scoring with a causal LM; bf16 on CUDA, float32 on CPU."""

    def __init__(self, path: str, batch_size: int = 16, max_length: int | None = None,
                 device: str | None = None) -> None:
        settings = read_settings(path)
        target = resolve_causal_lm(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target)
            self.model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load causal LM '{path}': {str(exc).splitlines()[0][:160]}") from None
        limit = max_length or settings.get("max_length") or 512
        self.prompter = YesNoPrompter(self.tokenizer, settings.get("template", PROMPT_TEMPLATE), limit)
        self.yes_id, self.no_id = answer_token_ids(self.tokenizer, *settings.get("answers", ("yes", "no")))
        self.score_kind = settings.get("score", "yes-no")  # "yes": the yes logit (CL-trained, arXiv 2510.14824)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.no_id
        self.batch_size = batch_size
        self.name = f"causal-lm:{path}"

    @torch.inference_mode()
    def score_pairs(self, queries: list[str], documents: list[str]) -> np.ndarray:
        """P(yes) per pair."""
        if len(queries) != len(documents):
            raise ValueError("queries and documents must have the same length")
        sequences = self.prompter(queries, documents)
        scores = np.zeros(len(sequences), dtype=np.float32)
        for rows in length_sorted_batches(np.array([len(s) for s in sequences]), self.batch_size):
            ids, mask, positions = pad_left([sequences[i] for i in rows], self.pad_id, self.device)
            logits = answer_logits(self.model, ids, mask, positions)
            if self.score_kind == "yes":
                scores[rows] = logits[:, self.yes_id].cpu().numpy()
            else:
                scores[rows] = torch.sigmoid(yes_no_scores(logits, self.yes_id, self.no_id)).cpu().numpy()
        return scores
