"""An adapter lives inside the index folder: ``adapter.safetensors`` beside the index, described in the
manifest's ``adapter`` entry (mapping, threshold, target, how it was fitted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from retriever.filtering.adapter import CosineAdapter
from retriever.index import IndexManifest, VectorStore, save_index
from retriever.index.store import current_version_dir, resolve_index_dir

ADAPTER_FILE = "adapter.safetensors"


@dataclass
class RelevanceModel:
    """The calibrated relevance of an index: adapter plus global threshold."""

    adapter: CosineAdapter
    threshold: float
    info: dict

    def relevance(self, query_vectors: np.ndarray, cosines: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.adapter(torch.from_numpy(np.asarray(query_vectors, dtype=np.float32)),
                                torch.from_numpy(np.asarray(cosines, dtype=np.float32))).numpy()


def save_with_adapter(index: VectorStore, manifest: IndexManifest, adapter: CosineAdapter, info: dict,
                      folder: Path) -> Path:
    """Write a new index version that carries the adapter; the previous version stays until pruned."""
    entry = adapter.config() | info | {"file": ADAPTER_FILE}
    state = {k: v.detach().contiguous() for k, v in adapter.state_dict().items()}
    return save_index(index, manifest.model_copy(update={"adapter": entry}), folder,
                      extra_files={ADAPTER_FILE: save_tensors(state)})


def load_relevance_model(index_name_or_path: str | Path, manifest: IndexManifest) -> RelevanceModel | None:
    """The index's adapter, or ``None`` when it has none (callers then serve raw cosines, flagged)."""
    if not manifest.adapter:
        return None
    folder = resolve_index_dir(index_name_or_path)
    pinned = folder / manifest.version if manifest.version else None
    version_dir = pinned if pinned is not None and pinned.is_dir() else current_version_dir(folder)
    info = dict(manifest.adapter)
    adapter = CosineAdapter(info["dimension"], info["mapping"], info["hidden"])
    adapter.load_state_dict(load_tensors((version_dir / info["file"]).read_bytes()))
    adapter.eval()
    return RelevanceModel(adapter, float(info["threshold"]), info)
