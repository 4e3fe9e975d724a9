"""First-stage specs of the reranker bench: parsing, labels, and a clear error for a bad spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from retriever.errors import RetrieverError
from retriever.rerank.first_stage import FirstStageSpec


def test_first_stage_specs_parse_and_label():
    dense = FirstStageSpec.parse("dense:indexes/scifact-zero-shot")
    assert dense == FirstStageSpec("dense", Path("indexes/scifact-zero-shot")) and dense.label == "scifact-zero-shot"
    hybrid = FirstStageSpec.parse("hybrid:calibrated:indexes/scifact-zero-shot:/work/models/scifact-adore")
    assert (hybrid.fusion, hybrid.dense_model) == ("calibrated", "/work/models/scifact-adore")
    assert hybrid.label == "scifact-hybrid-calibrated-adore"  # bench.hybrid's method name
    assert FirstStageSpec.parse("hybrid:tmm:indexes/nfcorpus-zero-shot").label == "nfcorpus-hybrid-tmm"
    for bad in ("hybrid:tmm", "sparse:x", "dense:"):
        with pytest.raises(RetrieverError, match="first stage"):
            FirstStageSpec.parse(bad)
