"""Soft-token (prompt) tuning of a frozen sentence-transformers encoder, after SoftREPA (arXiv 2503.08250).

``SoftTokenTransformer`` is a sentence-transformers ``Transformer`` module that inserts ``K`` learnable
vectors right after ``[CLS]``:

- at the input embeddings (``soft_layers = 1``: prompt tuning), and
- re-set at the input of each of the first ``soft_layers`` layers (deep prompts, P-tuning v2 / VPT-deep).

Layout of a sequence: ``[CLS] s_1 .. s_K t_1 .. t_n [SEP] [PAD]..``. The soft positions get position id 0
and the real tokens keep their original position ids, so with the soft tokens masked out the real tokens
see exactly the base model's inputs. The attention mask covers the soft tokens. Pooling ignores them by
default (``pool_soft_tokens=False``): the sentence embedding is still the mean over real tokens, and the
soft tokens act only through attention. Only ``prompts`` is trainable; the backbone is frozen.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules.transformer import Transformer
from torch import nn

logger = logging.getLogger(__name__)
PROMPTS_FILE = "soft_tokens.safetensors"


class SoftTokenTransformer(Transformer):
    config_keys = [*Transformer.config_keys, "soft_tokens", "soft_layers", "pool_soft_tokens"]

    def __init__(self, model_name_or_path: str, *args, soft_tokens: int = 4, soft_layers: int = 1,
                 pool_soft_tokens: bool = False, **kwargs) -> None:
        super().__init__(model_name_or_path, *args, **kwargs)
        layers = self._layers()
        if not 1 <= soft_layers <= len(layers):
            raise ValueError(f"soft_layers must be in [1, {len(layers)}], got {soft_layers}")
        if soft_tokens < 1:
            raise ValueError(f"soft_tokens must be >= 1, got {soft_tokens}")
        self.soft_tokens, self.soft_layers, self.pool_soft_tokens = soft_tokens, soft_layers, pool_soft_tokens
        hidden = self.model.config.hidden_size
        # Start from real token embeddings (common words), the prompt-tuning paper's best initialisation.
        vocab = self.model.get_input_embeddings().weight.detach()
        start = vocab[1000:1000 + soft_tokens].clone()
        self.prompts = nn.Parameter(start[None].repeat(soft_layers, 1, 1) + 0.0 * torch.zeros(soft_layers, 1, hidden))
        self.soft_mask_value = 1  # 0 masks the soft tokens out of attention (used to check equivalence)

    def _layers(self) -> nn.ModuleList:
        encoder = getattr(self.model, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise ValueError("soft tokens need an encoder with .encoder.layer (BERT-like models)")
        return encoder.layer

    def preprocess(self, inputs, prompt=None, processing_kwargs=None, **kwargs) -> dict[str, Any]:
        features = super().preprocess(inputs, prompt=prompt, processing_kwargs=processing_kwargs, **kwargs)
        ids = features["input_ids"]
        batch, k = ids.size(0), self.soft_tokens
        filler = torch.full((batch, k), self.tokenizer.unk_token_id or 0, dtype=ids.dtype)
        features["input_ids"] = torch.cat([ids[:, :1], filler, ids[:, 1:]], dim=1)
        mask = features["attention_mask"]
        features["attention_mask"] = torch.cat([mask[:, :1], torch.full((batch, k), self.soft_mask_value,
                                                                        dtype=mask.dtype), mask[:, 1:]], dim=1)
        if "token_type_ids" in features:
            types = features["token_type_ids"]
            features["token_type_ids"] = torch.cat([types[:, :1], torch.zeros_like(filler), types[:, 1:]], dim=1)
        positions = torch.arange(ids.size(1), dtype=torch.long).expand(batch, -1)
        features["position_ids"] = torch.cat([positions[:, :1], torch.zeros_like(filler), positions[:, 1:]], dim=1)
        return features

    @contextmanager
    def _inject(self):
        k = self.soft_tokens

        def set_input(module, args, output):
            output = output.clone()
            output[:, 1:k + 1] = self.prompts[0].to(output.dtype)
            return output

        def set_layer(index: int):
            def hook(module, args, kwargs):
                hidden = args[0].clone()
                hidden[:, 1:k + 1] = self.prompts[index].to(hidden.dtype)
                return (hidden, *args[1:]), kwargs
            return hook

        handles = [self.model.get_input_embeddings().register_forward_hook(set_input)]
        layers = self._layers()
        handles += [layers[i].register_forward_pre_hook(set_layer(i), with_kwargs=True)
                    for i in range(1, self.soft_layers)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        with self._inject():
            out = super().forward(features, **kwargs)
        if not self.pool_soft_tokens:
            mask = out["attention_mask"].clone()
            mask[:, 1:self.soft_tokens + 1] = 0
            out["attention_mask"] = mask
        return out

    def save(self, output_path: str, *args, **kwargs) -> None:
        super().save(output_path, *args, **kwargs)
        save_file({"prompts": self.prompts.detach().contiguous().cpu()}, str(Path(output_path) / PROMPTS_FILE))

    @classmethod
    def load(cls, model_name_or_path: str, *args, **kwargs):
        module = super().load(model_name_or_path, *args, **kwargs)
        path = Path(model_name_or_path) / kwargs.get("subfolder", "") / PROMPTS_FILE
        if path.is_file():
            with torch.no_grad():
                module.prompts.copy_(load_file(str(path))["prompts"])
        return module


def add_soft_tokens(model, soft_tokens: int, soft_layers: int = 1, pool_soft_tokens: bool = False):
    """Swap a loaded SentenceTransformer's first module for a SoftTokenTransformer over the same weights,
    freeze everything else, and return the model."""
    import tempfile

    first = model[0]
    with tempfile.TemporaryDirectory() as tmp:
        first.save(tmp)
        soft = SoftTokenTransformer.load(tmp, init_defaults={"soft_tokens": soft_tokens, "soft_layers": soft_layers,
                                                             "pool_soft_tokens": pool_soft_tokens})
    soft.soft_tokens, soft.soft_layers, soft.pool_soft_tokens = soft_tokens, soft_layers, pool_soft_tokens
    soft.to(next(first.parameters()).device)
    model._modules[next(iter(model._modules))] = soft
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith("prompts")
    return model
