"""Batches for the merge: read from a directory in the `training.data` layout, and moved to a model's device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def to_model_device(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, Any]:
    """`batch` with its tensors on the device of `model`'s parameters (CPU for a model without parameters)."""
    device = next((tensor.device for tensor in model.parameters()), torch.device("cpu"))
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def schema_batches(
    data_dir: str | Path,
    processor,
    *,
    split: str,
    tasks: Sequence[str] | None = None,
    batch_size: int = 8,
    max_examples: int | None = None,
) -> list[dict]:
    """Batches (model inputs with labels) of the examples of `data_dir/SPLIT.jsonl` (the `training.data` schema,
    e.g. a synthetic world), optionally restricted to `tasks`, built with `UnivalMultitaskCollator` in evaluation
    mode."""
    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import read_jsonl_examples

    root = Path(data_dir)
    if not (root / f"{split}.jsonl").exists():
        raise FileNotFoundError(f"{root / (split + '.jsonl')} not found (a directory in the training.data layout)")
    wanted = set(tasks) if tasks else None
    examples = []
    for example in read_jsonl_examples(root, split):
        if wanted is None or example["task"] in wanted:
            examples.append(example)
            if max_examples is not None and len(examples) >= max_examples:
                break
    if not examples:
        restriction = f" for tasks {sorted(wanted)}" if wanted else ""
        raise ValueError(f"no examples in {root / (split + '.jsonl')}{restriction}")
    collator = UnivalMultitaskCollator(processor, training=False)
    return [collator(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]
