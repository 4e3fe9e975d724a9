"""Token counts, limits and truncation with the served models' own tokenizers.

Truncation cuts the original string at a token's character offset (fast tokenizers' offset mapping), so the
kept text is exactly a prefix or suffix of what was sent. Tokenizers are not safe to share between threads,
so callers run these functions on the model thread (:func:`in_model_thread`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from retriever.encoders import TextEncoder
from service.api_errors import ClientError

Spans = list[list[tuple[int, int]]]


async def in_model_thread(runtime, fn, *args):
    return await asyncio.get_running_loop().run_in_executor(runtime.model_executor, fn, *args)


def token_spans(tokenizer, texts: list[str]) -> Spans:
    """Character spans of each text's tokens, special tokens excluded."""
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [list(map(tuple, spans)) for spans in encoded["offset_mapping"]]


def fit(texts: list[str], spans: Spans, budget: int, side: str = "right") -> list[str]:
    """Each text cut to its first (``side="right"`` drops the end) or last ``budget`` tokens."""
    budget = max(1, budget)
    out = []
    for text, span in zip(texts, spans, strict=True):
        if len(span) <= budget:
            out.append(text)
        elif side == "right":
            out.append(text[: span[budget - 1][1]])
        else:
            out.append(text[span[len(span) - budget][0]:])
    return out


@dataclass
class EncoderTokens:
    """The tokenizer of one encoder and how many content tokens the model reads (its max_seq_length less
    the special tokens it adds)."""

    tokenizer: object
    budget: int
    specials: int

    @classmethod
    def of(cls, encoder: TextEncoder) -> EncoderTokens:
        tokenizer = encoder.model.tokenizer
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        return cls(tokenizer, int(encoder.model.max_seq_length) - specials, specials)

    def counts(self, spans: Spans) -> list[int]:
        """Tokens the model actually reads per text: truncated content plus the special tokens."""
        return [min(len(s), self.budget) + self.specials for s in spans]

    def check_length(self, spans: Spans, what: str, hint: str, limit: int | None = None) -> None:
        limit = limit or self.budget
        for i, span in enumerate(spans):
            if len(span) > limit:
                raise ClientError(413, f"{what}[{i}] is {len(span)} tokens, over the limit of {limit} ({hint})",
                                  param=what)

    def decode(self, ids: list[int], what: str) -> str:
        vocab = len(self.tokenizer)
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ClientError(400, f"{what}: token ids must be ids of the served model's tokenizer (0 to "
                                   f"{vocab - 1}); got {bad[:3]}", param=what)
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def rerank_tokens(reranker, fallback: TextEncoder) -> tuple[object, int, bool]:
    """``(tokenizer, content budget, pair)`` of a reranker: with ``pair`` the budget holds query and document
    together (a cross-encoder), else the document alone."""
    name = getattr(reranker, "name", "")
    if name.startswith("cross-encoder:"):
        tokenizer = reranker.model.tokenizer
        return tokenizer, int(reranker.model.max_length) - tokenizer.num_special_tokens_to_add(pair=True), True
    if name.startswith("causal-lm:"):
        return reranker.tokenizer, int(reranker.prompter.doc_budget), False
    encoder = reranker.encoder.document if name.startswith("bi-encoder-cosine:") else fallback
    view = EncoderTokens.of(encoder)
    return view.tokenizer, view.budget, False


def fit_rerank_documents(reranker, fallback: TextEncoder, query: str, documents: list[str], *,
                         truncate: bool, side: str, max_tokens: int | None = None) -> list[str]:
    """Documents within the reranker's limit: a 413 for too long ones unless ``truncate``; ``max_tokens``
    (Cohere's max_tokens_per_doc) cuts each document to that many tokens first."""
    tokenizer, budget, pair = rerank_tokens(reranker, fallback)
    spans = token_spans(tokenizer, documents)
    if max_tokens is not None:
        documents = fit(documents, spans, max_tokens, "right")
        spans = [s[:max_tokens] for s in spans]
    room = budget - (len(token_spans(tokenizer, [query])[0]) if pair else 0)
    over = [i for i, s in enumerate(spans) if len(s) > room]
    if over and not truncate:
        raise ClientError(413, f"texts[{over[0]}] is {len(spans[over[0]])} tokens, over the reranker's limit of "
                               f"{max(room, 0)} with this query (send truncate: true)", param="texts")
    return fit(documents, spans, room, side) if over else documents
