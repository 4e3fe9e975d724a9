"""The lexical side of an index: SQLite FTS5 inside the durable document store (see :mod:`.fts5`)."""

from retriever.lexical.fts5 import LEXICAL_VERSION, TOKENIZER, match_expression, query_terms

__all__ = ["LEXICAL_VERSION", "TOKENIZER", "match_expression", "query_terms"]
