"""Soft-token (prompt) tuning of a frozen sentence-transformers encoder, after SoftREPA (arXiv 2503.08250).

``SoftTokenTransformer`` is a sentence-transformers ``Transformer`` module with ``K`` learnable vectors per
layer in its first ``soft_layers`` layers (deep prompts; ``soft_layers = 1`` is prompt tuning at the
input). Each layer's prompts act as extra keys and values of that layer's self-attention, as in
LLaMA-Adapter (arXiv 2303.16199): every real token attends to them through its own softmax over the K
prompts, and that contribution is multiplied by ``tanh(gate)``, one gate per head, initialised to zero.

So the untrained module is exactly the base model (the gate is 0), and training opens the gate. The
sequence itself is unchanged: no token is inserted, pooling and position ids are the base model's. The
prompts of layer ``i`` start as the base model's hidden states at the input of layer ``i`` for K common
words, i.e. at that layer's scale (word-embedding rows have norm ~1, deeper hidden states ~11). Only
``prompts`` and ``gates`` are trainable; the backbone is frozen and kept in eval mode (no dropout).
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules.transformer import Transformer
from torch import nn

logger = logging.getLogger(__name__)
PROMPTS_FILE = "soft_tokens.safetensors"
FIRST_INIT_TOKEN = 1000  # prompts start from the hidden states of vocabulary rows 1000.. (common words)


class SoftTokenTransformer(Transformer):
    config_keys = [*Transformer.config_keys, "soft_tokens", "soft_layers"]

    def __init__(self, model_name_or_path: str, *args, soft_tokens: int = 4, soft_layers: int = 1,
                 **kwargs) -> None:
        kwargs.pop("pool_soft_tokens", None)  # option of the former token-insertion design
        super().__init__(model_name_or_path, *args, **kwargs)
        layers = self._layers()
        if not 1 <= soft_layers <= len(layers):
            raise ValueError(f"soft_layers must be in [1, {len(layers)}], got {soft_layers}")
        if soft_tokens < 1:
            raise ValueError(f"soft_tokens must be >= 1, got {soft_tokens}")
        self.soft_tokens, self.soft_layers = soft_tokens, soft_layers
        heads = self.model.config.num_attention_heads
        self.prompts = nn.Parameter(self._hidden_state_init(soft_tokens, soft_layers))
        self.gates = nn.Parameter(torch.zeros(soft_layers, heads))

    def _layers(self) -> nn.ModuleList:
        encoder = getattr(self.model, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise ValueError("soft tokens need an encoder with .encoder.layer (BERT-like models)")
        return encoder.layer

    @torch.no_grad()
    def _hidden_state_init(self, k: int, n_layers: int) -> torch.Tensor:
        """``[n_layers, k, hidden]``: the base model's input to layer ``i`` at K common-word positions."""
        vocab = self.model.config.vocab_size
        ids = (torch.arange(k) % max(1, vocab - FIRST_INIT_TOKEN) + FIRST_INIT_TOKEN).clamp(max=vocab - 1)
        cls = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else 0
        sep = self.tokenizer.sep_token_id if self.tokenizer.sep_token_id is not None else 0
        input_ids = torch.cat([torch.tensor([cls]), ids, torch.tensor([sep])])[None]
        was_training = self.model.training
        self.model.eval()
        out = self.model(input_ids=input_ids.to(self.model.device), output_hidden_states=True)
        self.model.train(was_training)
        return torch.stack([out.hidden_states[i][0, 1:k + 1] for i in range(n_layers)]).float().cpu().clone()

    def train(self, mode: bool = True):
        """The frozen backbone always stays in eval mode (no dropout); only the prompts learn."""
        super().train(mode)
        self.model.eval()
        return self

    def _prompt_attention(self, attention: nn.Module, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """``tanh(gate_h) * softmax(q_h k_h(P)^T / sqrt(d)) v_h(P)`` for every head ``h``, as ``[B, L, H]``."""
        heads, size = attention.num_attention_heads, attention.attention_head_size
        prompts = self.prompts[layer].to(hidden.dtype)
        q = attention.query(hidden).view(*hidden.shape[:-1], heads, size).transpose(1, 2)  # [B, h, L, d]
        k = attention.key(prompts).view(-1, heads, size).transpose(0, 1)  # [h, K, d]
        v = attention.value(prompts).view(-1, heads, size).transpose(0, 1)
        weights = (q @ k.transpose(-1, -2) * size ** -0.5).softmax(dim=-1)  # [B, h, L, K]
        context = (weights @ v) * torch.tanh(self.gates[layer]).to(hidden.dtype)[None, :, None, None]
        return context.transpose(1, 2).reshape(*hidden.shape[:-1], heads * size)

    @contextmanager
    def _inject(self):
        def hook_for(layer: int):
            def hook(module, args, kwargs, output):
                hidden = args[0] if args else kwargs["hidden_states"]
                extra = self._prompt_attention(module, hidden, layer)
                if isinstance(output, tuple):
                    return (output[0] + extra, *output[1:])
                return output + extra
            return hook

        layers = self._layers()
        handles = [layers[i].attention.self.register_forward_hook(hook_for(i), with_kwargs=True)
                   for i in range(self.soft_layers)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        with self._inject():
            return super().forward(features, **kwargs)

    def save(self, output_path: str, *args, **kwargs) -> None:
        super().save(output_path, *args, **kwargs)
        save_file({"prompts": self.prompts.detach().contiguous().cpu(),
                   "gates": self.gates.detach().contiguous().cpu()}, str(Path(output_path) / PROMPTS_FILE))

    @classmethod
    def load(cls, model_name_or_path: str, *args, **kwargs):
        module = super().load(model_name_or_path, *args, **kwargs)
        path = Path(model_name_or_path) / kwargs.get("subfolder", "") / PROMPTS_FILE
        if path.is_file():
            saved = load_file(str(path))
            if "gates" not in saved:
                raise ValueError(f"{path} holds soft tokens of the former (ungated) design: retrain them")
            with torch.no_grad():
                module.prompts.copy_(saved["prompts"])
                module.gates.copy_(saved["gates"])
        return module


def add_soft_tokens(model, soft_tokens: int, soft_layers: int = 1):
    """Swap a loaded SentenceTransformer's first module for a SoftTokenTransformer over the same weights,
    freeze everything else, and return the model."""
    first = model[0]
    with tempfile.TemporaryDirectory() as tmp:
        first.save(tmp)
        soft = SoftTokenTransformer.load(tmp, init_defaults={"soft_tokens": soft_tokens, "soft_layers": soft_layers})
    if (soft.soft_tokens, soft.soft_layers) != (soft_tokens, soft_layers):
        raise ValueError("soft-token settings were not applied")
    soft.to(next(first.parameters()).device)
    model._modules[next(iter(model._modules))] = soft
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith(("prompts", "gates"))
    return model
