"""Issue 19: Milvus Lite (the installed milvus-lite / pymilvus) runs Milvus' built-in BM25 full-text search
and hybrid search with RRFRanker and WeightedRanker. Pinned here so that an upgrade that drops them shows."""

from pathlib import Path

import pytest

pytest.importorskip("milvus_lite")


def test_milvus_lite_bm25_function_and_hybrid_rankers(tmp_path: Path) -> None:
    from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker, WeightedRanker

    client = MilvusClient(str(tmp_path / "bm25.db"))
    try:
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                     output_field_names=["sparse"]))
        index = client.prepare_index_params()
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index("dense", index_type="FLAT", metric_type="IP")
        client.create_collection("docs", schema=schema, index_params=index)
        client.insert("docs", [{"id": "a", "text": "earthquakes and tectonic plates", "dense": [1.0, 0.0]},
                               {"id": "b", "text": "coffee blocks adenosine receptors", "dense": [0.0, 1.0]},
                               {"id": "c", "text": "volcanic ash and magma", "dense": [0.6, 0.8]}])
        lexical = client.search("docs", data=["tectonic plates"], anns_field="sparse", limit=3,
                                search_params={"metric_type": "BM25"})
        assert [h["id"] for h in lexical[0]] == ["a"]  # only "a" holds a query term
        requests = [AnnSearchRequest(data=["coffee"], anns_field="sparse", param={"metric_type": "BM25"}, limit=3),
                    AnnSearchRequest(data=[[1.0, 0.0]], anns_field="dense", param={"metric_type": "IP"}, limit=3)]
        rrf = client.hybrid_search("docs", requests, RRFRanker(60), limit=3)[0]
        # RRF by hand: "b" is 1st lexically and 3rd densely; "a" 1st densely only; "c" 2nd densely only
        scores = {h["id"]: h["distance"] for h in rrf}
        assert scores["b"] == pytest.approx(1 / 61 + 1 / 63, abs=1e-6)
        assert scores["a"] == pytest.approx(1 / 61, abs=1e-6) and scores["c"] == pytest.approx(1 / 62, abs=1e-6)
        weighted = client.hybrid_search("docs", requests, WeightedRanker(0.5, 0.5), limit=3)[0]
        assert {h["id"] for h in weighted} == {"a", "b", "c"}
    finally:
        client.close()
