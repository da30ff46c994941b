"""Task balancing: draw every training example by first picking a task group by weight, then an example of it.

The groups (usually one per task, or per dataset x task) live back to back in one concatenated dataset. The
sampler produces the *global* index stream from a seed shared by all processes; `accelerate` (through `Trainer`)
hands consecutive batches of that stream to the processes, so the mixture holds across processes too, and resuming
with the same seed replays the same order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import torch
from torch.utils.data import Sampler


def mixture_weights(
    sizes: Mapping[str, int], weights: Mapping[str, float] | None = None, temperature: float = 1.0
) -> dict[str, float]:
    """Sampling probability of each group.

    With explicit `weights` they are normalised (groups missing from `weights` get 0 and are never drawn). Without,
    the probability is proportional to `size ** (1 / temperature)`: temperature 1 follows the sizes, larger
    temperatures move towards uniform (T5/mT5 style).
    """
    if not sizes:
        raise ValueError("no task groups to sample from")
    if any(size <= 0 for size in sizes.values()):
        empty = [name for name, size in sizes.items() if size <= 0]
        raise ValueError(f"task group(s) {empty} have no examples")
    if weights is not None:
        unknown = set(weights) - set(sizes)
        if unknown:
            raise ValueError(f"weights name unknown task group(s) {sorted(unknown)}; groups: {sorted(sizes)}")
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"sampling weights must be non-negative, got {dict(weights)}")
        raw = {name: float(weights.get(name, 0.0)) for name in sizes}
    else:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        raw = {name: size ** (1.0 / temperature) for name, size in sizes.items()}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("sampling weights sum to zero")
    return {name: value / total for name, value in raw.items()}


class TaskBalancedSampler(Sampler[int]):
    """Indices into a concatenation of groups, each draw's group chosen by `probabilities`.

    Within a group, examples come in a random order without replacement; a group that runs out is reshuffled
    (so a small, up-weighted task is repeated, a large, down-weighted one is sub-sampled). `num_samples` draws make
    one epoch (default: the total number of examples). `set_epoch` changes the order; the same seed and epoch
    always give the same stream.
    """

    def __init__(
        self,
        group_sizes: Mapping[str, int],
        probabilities: Mapping[str, float],
        num_samples: int | None = None,
        seed: int = 0,
    ):
        self.names = list(group_sizes)
        self.sizes = [int(group_sizes[name]) for name in self.names]
        self.offsets = [0]
        for size in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + size)
        self.probabilities = torch.tensor([float(probabilities.get(name, 0.0)) for name in self.names], dtype=torch.float64)
        if self.probabilities.sum() <= 0:
            raise ValueError("all sampling probabilities are zero")
        self.num_samples = int(num_samples if num_samples is not None else sum(self.sizes))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def group_sequence(self) -> torch.Tensor:
        """The group of every draw of this epoch, (num_samples,)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.multinomial(self.probabilities, self.num_samples, replacement=True, generator=generator)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 7)
        groups = self.group_sequence()
        counts = torch.bincount(groups, minlength=len(self.names)).tolist()
        # For each group, enough shuffled passes over its examples to cover its draws.
        per_group = []
        for size, offset, count in zip(self.sizes, self.offsets, counts):
            passes = max(1, math.ceil(count / size))
            order = torch.cat([torch.randperm(size, generator=generator) for _ in range(passes)])[:count]
            per_group.append((order + offset).tolist())
        cursors = [0] * len(self.names)
        for group in groups.tolist():
            yield per_group[group][cursors[group]]
            cursors[group] += 1

    def realised_proportions(self) -> dict[str, float]:
        counts = Counter(self.group_sequence().tolist())
        return {name: counts.get(i, 0) / self.num_samples for i, name in enumerate(self.names)}


__all__ = ["TaskBalancedSampler", "mixture_weights"]
