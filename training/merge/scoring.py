"""The command line's score for greedy soups: minus the token-level cross-entropy under teacher forcing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .batches import to_model_device


def negative_cross_entropy(batches: Sequence[Mapping[str, torch.Tensor]]) -> Callable[[nn.Module], float]:
    """An `evaluate_fn` for `greedy_soup`: minus the mean token-level cross-entropy (teacher forcing, no label
    smoothing, label weights ignored) of a model on `batches` (with `labels`). Higher is better."""

    def evaluate(model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for batch in batches:
                inputs = to_model_device(model, batch)
                labels = inputs.pop("labels")
                inputs.pop("label_weights", None)
                if "decoder_input_ids" not in inputs:
                    inputs["labels"] = labels
                logits = model(**inputs).logits.float()
                total += nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="sum"
                ).item()
                tokens += int(labels.ne(-100).sum())
        model.train(was_training)
        return -total / max(tokens, 1)

    evaluate.__name__ = "negative_cross_entropy"
    return evaluate
