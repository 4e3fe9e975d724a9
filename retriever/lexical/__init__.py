"""The lexical side of an index: SQLite FTS5 inside the durable document store (see :mod:`.fts5`)."""

from retriever.errors import RetrieverError
from retriever.lexical.fts5 import LEXICAL_VERSION, TOKENIZER, match_expression, query_terms


class NoLexicalSideError(RetrieverError):
    """Lexical or hybrid search on an index without a lexical side (built before it existed, or with
    ``--no-lexical``). Like searching a Qdrant collection by a sparse vector it was not created with: the
    request is valid, the index lacks the field (the service answers 409); nothing is built behind the
    caller's back."""


__all__ = ["LEXICAL_VERSION", "TOKENIZER", "NoLexicalSideError", "match_expression", "query_terms"]
