"""``rows=query`` for sentence-transformers' trainer: every epoch's rows drawn up front, visited block by block.

Tevatron's convention is one row per training query per epoch, each with a positive drawn anew. The trainer
takes one fixed dataset, so :func:`training.examples.epoch_blocks` stacks one draw per epoch and
:class:`EpochBlocksBatchSampler` visits the draws in order: block ``e`` is epoch ``e``, shuffled with
``seed + e`` under sentence-transformers' no-duplicates rule (a query never meets its own text in a batch).
The order is a function of the seed alone, so a resumed run replays the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler, NoDuplicatesBatchSampler


class EpochBlocksBatchSampler(DefaultBatchSampler):
    """Batches of block 0, then of block 1, ...: each block of ``block`` consecutive rows is one epoch."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None,
                 seed: int = 0, block: int = 0) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        if block <= 0 or len(dataset) % block:
            raise ValueError(f"{len(dataset)} rows do not split into blocks of {block}")
        self.blocks = [
            NoDuplicatesBatchSampler(dataset.select(range(start, start + block)), batch_size, drop_last,
                                     valid_label_columns, torch.Generator(), seed + e)
            for e, start in enumerate(range(0, len(dataset), block))]
        self.block = block

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def __iter__(self) -> Iterator[list[int]]:
        for e, sampler in enumerate(self.blocks):
            offset = e * self.block
            for batch in sampler:
                yield [offset + i for i in batch]


def epoch_blocks_sampler(block: int):
    """The ``batch_sampler`` argument of the training arguments for blocks of ``block`` rows."""
    return partial(EpochBlocksBatchSampler, block=block)
