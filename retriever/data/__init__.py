"""BEIR-layout datasets: loading, validation, name resolution and held-out splits."""

from retriever.data.beir_loader import BeirDataset, load_beir, read_jsonl, read_qrels
from retriever.data.resolve import DEFAULT_DATA_PATH, resolve_dataset
from retriever.data.splits import held_out_split

__all__ = [
    "BeirDataset",
    "DEFAULT_DATA_PATH",
    "held_out_split",
    "load_beir",
    "load_dataset",
    "read_jsonl",
    "read_qrels",
    "resolve_dataset",
]


def load_dataset(name_or_path: str, download: bool = True) -> BeirDataset:
    """Resolve a dataset by name or path and load it."""
    return load_beir(resolve_dataset(name_or_path, download=download))
