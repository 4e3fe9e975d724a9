"""The loss table: every retrieval loss ``retriever train --loss`` knows, by name.

Adding a loss is one file (a :class:`~training.losses.base.BatchLoss` subclass, or any module built as
``cls(model, known=..., temperature=..., gather_across_devices=..., **options)``) plus one line here. The
config refuses names that are not in the table, and the methods that cannot train a loss refuse it.
Entries name their class as ``"module:Class"`` so that reading the table (the config, the CLI help) does
not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from retriever.tables import table_entry


@dataclass(frozen=True)
class LossSpec:
    target: str  # "module:Class", imported when a loss is built
    temperature: float  # the default tau
    help: str
    needs_negatives: bool = False  # mined hard negatives (--negatives-file, --n-negatives >= 1)
    methods: frozenset[str] = frozenset({"finetune"})  # the training methods that implement this loss
    options: dict[str, str] = field(default_factory=dict)  # config field -> constructor keyword

    def load(self) -> type:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


LOSSES: dict[str, LossSpec] = {
    "contrastive": LossSpec("training.losses.infonce:ContrastiveLoss", 0.05, "InfoNCE, known positives masked",
                            methods=frozenset({"finetune", "soft-tokens"})),
    "mw": LossSpec("training.losses.mw:MWLoss", 0.01, "MW (AUC) over every in-batch pair",
                   methods=frozenset({"finetune", "soft-tokens"}), options={"mw_normalize": "normalize"}),
    "mnrl": LossSpec("training.losses.mnrl:MNRLoss", 0.05, "sentence-transformers' MultipleNegativesRankingLoss"),
    "star": LossSpec("training.losses.star:StarLoss", 0.05, "STAR: pairwise, mined plus in-batch negatives",
                     needs_negatives=True),
}


def loss_spec(name: str) -> LossSpec:
    """The table entry of ``name``; an unknown name fails with the known ones."""
    return table_entry(LOSSES, "loss", name)


def losses_help() -> str:
    return " | ".join(f"{name} ({spec.help})" for name, spec in LOSSES.items())
