"""Bucketed batching: every batch holds samples of one shape (frame count, height, width), so they stack.

``BucketBatchSampler`` groups dataset indices by ``dataset.bucket_key(i)`` (``VideoFolderDataset`` gives
``(F, height, width)``: its target for the clip's aspect ratio and length; ``CachedDataset`` gives the latent
shape). Indices whose key is ``None`` (known unusable) are left out. Per epoch, each bucket's indices are
shuffled and cut into batches of ``batch_size`` (the last, smaller one dropped with ``drop_last``), then the
batches of all buckets are shuffled together; everything is drawn from ``numpy.random.default_rng([seed,
epoch])``, so the same (seed, epoch) gives the same batches on every process and every run. It is a plain
batch sampler: ``DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_videos)``, and accelerate's
``prepare`` shards it across processes like any other. Note that a loader prepared by accelerate calls
``set_epoch(n)`` on this sampler and on the dataset itself at the start of each pass, with ``n`` its own pass
counter (``prepared_loader.iteration``); to choose the epoch, call ``prepared_loader.set_epoch(epoch)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler):
    """Batches of ``batch_size`` indices sharing a bucket key, deterministic per ``(seed, epoch)``.

    ``dataset_or_keys`` is a dataset with ``bucket_key(i)`` or a sequence of keys, one per index (any hashable;
    ``None`` excludes the index). Buckets are kept in order of first appearance. With ``drop_last`` a bucket
    smaller than ``batch_size`` contributes nothing; a sampler with no batch at all is a ``ValueError``.
    """

    def __init__(self, dataset_or_keys, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        if hasattr(dataset_or_keys, "bucket_key"):
            keys = [dataset_or_keys.bucket_key(i) for i in range(len(dataset_or_keys))]
        else:
            keys = list(dataset_or_keys)
        self.buckets: dict = {}
        for index, key in enumerate(keys):
            if key is not None:
                self.buckets.setdefault(key, []).append(index)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0
        if len(self) == 0:
            sizes = {str(k): len(v) for k, v in self.buckets.items()}
            raise ValueError(
                f"no batch of {batch_size} can be formed (drop_last={drop_last}); samples per bucket: {sizes or 'none'}"
            )

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` next."""
        self.epoch = int(epoch)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of ``epoch`` (default: the current one), in the order ``__iter__`` yields them."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        out = []
        for indices in self.buckets.values():
            order = [indices[i] for i in rng.permutation(len(indices))] if self.shuffle else list(indices)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    out.append(batch)
        if self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def __iter__(self):
        yield from self.batches()

    def __len__(self) -> int:
        if self.drop_last:
            return sum(len(v) // self.batch_size for v in self.buckets.values())
        return sum(-(-len(v) // self.batch_size) for v in self.buckets.values())


def collate_videos(samples: list) -> dict | None:
    """Stack a list of sample dicts: tensors of equal shape (``video``, ``latents``, ``prompt_embeds``) become one
    batched tensor, ints a ``LongTensor``, everything else (captions, metadata, paths) a list. ``None`` samples
    are dropped; a batch of nothing but ``None`` gives ``None``."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot stack {key!r} of different shapes {sorted(shapes)}; batch with "
                                 "BucketBatchSampler so every batch holds one shape")
            batch[key] = torch.stack(values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.long)
        else:
            batch[key] = values
    return batch
