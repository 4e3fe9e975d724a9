"""Export with ``torch.onnx`` (TorchScript tracer), fuse with ONNX Runtime's transformer optimizer, and
quantize dynamically to int8 with per-channel weights.

A bi-encoder's graph is the whole sentence-transformers module chain (transformer, pooling, dense,
normalize): it takes the tokenizer's outputs and returns ``sentence_embedding``. A cross-encoder's graph is
its sequence-classification model and returns ``logits``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from retriever.errors import ModelError

logger = logging.getLogger(__name__)

OPSET = 17
FP32_FILE = "model.onnx"
OPTIMIZED_FILE = "model_O2.onnx"


class _SentenceGraph(torch.nn.Module):
    """A SentenceTransformer as a function of tensors, so that the tracer can follow it."""

    def __init__(self, model, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(dict(zip(self.names, tensors, strict=True)))["sentence_embedding"]


class _LogitsGraph(torch.nn.Module):
    def __init__(self, model, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True))).logits


def refuse_unsupported(model) -> None:
    """Soft-token models rewrite the token sequence (filler tokens, position ids) and inject learned
    vectors with hooks; routers send queries and documents through different modules. Neither is a plain
    graph over the tokenizer's outputs, so they are refused rather than exported wrong."""
    kinds = [type(m).__name__ for m in model.children()]
    if "SoftTokenTransformer" in kinds:
        raise ModelError("soft-token models cannot be exported to ONNX (their tokens and prompts are injected "
                         "outside the graph); serve them with --backend torch")
    if "Router" in kinds:
        raise ModelError("models with a Router module (different modules per side) cannot be exported to ONNX; "
                         "use --backend torch")


def _eager_attention(hf_model) -> None:
    """Eager attention traces to the MatMul/Softmax pattern the optimizer fuses into one Attention op."""
    try:
        hf_model.set_attn_implementation("eager")
    except (AttributeError, ValueError) as exc:
        logger.debug("keeping the model's attention implementation: %s", exc)


def _trace(graph: torch.nn.Module, sample: dict[str, torch.Tensor], output: str, path: Path) -> None:
    names = list(sample)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {output: {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(graph.eval(), tuple(sample[n] for n in names), str(path), input_names=names,
                          output_names=[output], dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def export_sentence_transformer(model, folder: Path) -> Path:
    """Trace a (CPU, fp32) SentenceTransformer into ``folder/model.onnx``."""
    refuse_unsupported(model)
    _eager_attention(model[0].model)
    features = model.preprocess(["an example sentence to trace", "and a second, somewhat longer one to pad"])
    sample = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
    path = folder / FP32_FILE
    _trace(_SentenceGraph(model, list(sample)), sample, "sentence_embedding", path)
    return path


def export_cross_encoder(model, folder: Path) -> Path:
    """Trace a sentence-transformers CrossEncoder's classification model into ``folder/model.onnx``."""
    hf_model = model.model.float().cpu().eval()
    _eager_attention(hf_model)
    sample = dict(model.tokenizer(["a query"], ["a document to trace, long enough to pad"], padding=True,
                                  return_tensors="pt"))
    path = folder / FP32_FILE
    _trace(_LogitsGraph(hf_model, list(sample)), sample, "logits", path)
    return path


def optimize(source: Path, config) -> Path:
    """Fuse attention, skip-LayerNorm and bias-GELU with ONNX Runtime's transformer optimizer (level 1: no
    hardware-specific nodes, so the file runs anywhere)."""
    from onnxruntime.transformers.optimizer import optimize_model  # optional extra (onnx)

    for noisy in ("onnx_model", "onnx_model_bert", "fusion_base", "fusion_utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    heads = getattr(config, "num_attention_heads", 0)
    hidden = getattr(config, "hidden_size", 0)
    model_type = "bert" if getattr(config, "model_type", "bert") in ("bert", "roberta", "xlm-roberta") else "bert"
    optimized = optimize_model(str(source), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=1)
    logger.info("fused operators: %s", {k: v for k, v in optimized.get_fused_operator_statistics().items() if v})
    target = source.parent / OPTIMIZED_FILE
    optimized.save_model_to_file(str(target))
    return target


def quantize_int8(source: Path, target: Path, exclude: list[str] | None = None) -> Path:
    """Dynamic int8: per-channel int8 weights, activations quantized per batch at run time; nodes named in
    ``exclude`` stay fp32."""
    import onnx  # optional extra (onnx)
    from onnxruntime.quantization import QuantType, quantize_dynamic  # optional extra (onnx)

    root = logging.getLogger()
    level, root.level = root.level, max(root.level, logging.WARNING)  # the quantizer logs every tensor at INFO
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=exclude or [],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})
    finally:
        root.setLevel(level)
    return target


def sensitive_nodes(path: Path) -> list[str]:
    """The feed-forward down-projections (after GELU, where BERT's activation outliers live) and every
    MatMul outside the encoder layers (dense heads, classifiers): the first candidates to keep in fp32."""
    import onnx  # optional extra (onnx)

    graph = onnx.load(str(path), load_external_data=False).graph
    matmuls = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    return [n for n in matmuls if (n.endswith("/output/dense/MatMul") and "/attention/" not in n)
            or "/encoder/layer." not in n]
