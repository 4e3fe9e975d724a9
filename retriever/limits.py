"""Input limits shared by the CLI and the service (the service's defaults; RETRIEVER_* settings override)."""

from __future__ import annotations

import re

from retriever.errors import RetrieverError

MAX_QUERY_CHARS = 2048
MAX_BATCH = 64
MAX_TOP_K = 1000
MAX_TOTAL_HITS = 10_000  # queries x top_k per request: 64 x 1000 hits with texts came to 91 MB
MAX_RERANK_DOCUMENTS = 1000
MAX_DOCUMENT_CHARS = 20_000

NOT_BLANK = r"[^ \t\n\r\f\v]"  # a text must hold one non-whitespace character (ECMA and Python agree on it)
_NOT_BLANK = re.compile(NOT_BLANK)


def is_blank(text: str) -> bool:
    return _NOT_BLANK.search(text) is None


def check_queries(queries: list[str], max_chars: int = MAX_QUERY_CHARS) -> None:
    """The service's query rules, for the CLI: no blank query, none over ``max_chars``."""
    for number, query in enumerate(queries, 1):
        if is_blank(query):
            raise RetrieverError(f"query {number} is empty or blank")
        if len(query) > max_chars:
            raise RetrieverError(f"query {number} is {len(query)} characters, over the limit of {max_chars} "
                                 "(the service's RETRIEVER_MAX_QUERY_CHARS default)")
