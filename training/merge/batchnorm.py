"""BatchNorm running statistics of a merged model, re-estimated on data (`bn="recompute"`).

Interpolating the running statistics of two models does not give the statistics of the interpolated model's features;
re-estimating them on a few batches does (the towers' BatchNorm layers are the only ones with running statistics).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import torch
from torch import nn

from .batches import to_model_device


logger = logging.getLogger(__name__)

BN_MODES = ("interpolate", "recompute")

Batches = Union[Iterable[Mapping[str, Any]], Callable[[], Iterable[Mapping[str, Any]]]]


def _forward_for_statistics(model: nn.Module, batch: Mapping[str, Any]) -> None:
    batch = to_model_device(model, batch)
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        # the towers (all the BatchNorm layers) live in the encoder: the decoder needs not run
        encoder = model.get_encoder()
        accepted = {
            name
            for name, parameter in inspect.signature(encoder.forward).parameters.items()
            if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
        encoder(**{key: value for key, value in batch.items() if key in accepted})
    else:
        model(**batch)


def _restore(module: nn.modules.batchnorm._BatchNorm, saved: tuple[torch.Tensor, ...]) -> None:
    mean, var, count = saved
    with torch.no_grad():
        module.running_mean.copy_(mean)
        module.running_var.copy_(var)
        module.num_batches_tracked.copy_(count)


def _accumulate_statistics(model: nn.Module, layers: list, batches: Iterable, max_batches: int | None) -> int:
    """Run `batches` through `model` with its BatchNorm `layers` reset, in train mode and with `momentum=None`
    (cumulative average), everything else in eval mode; restores the momenta and the train / eval modes. Returns the
    number of batches run."""
    momenta = {name: module.momentum for name, module in layers}
    modes = [(module, module.training) for module in model.modules()]
    seen = 0
    try:
        model.eval()
        for _, module in layers:
            module.reset_running_stats()
            module.momentum = None
            module.train()
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                _forward_for_statistics(model, batch)
                seen += 1
    finally:
        for name, module in layers:
            module.momentum = momenta[name]
        for module, mode in modes:
            module.train(mode)
    return seen


def recompute_batchnorm(model: nn.Module, batches: Batches, *, max_batches: int | None = None) -> dict:
    """Re-estimate the running statistics of every BatchNorm layer of `model` (in place) on `batches`.

    The statistics are reset, the BatchNorm layers put in train mode with `momentum=None` (cumulative average:
    the running mean / variance become the average over the batches of each batch's mean / unbiased variance, so
    with one batch exactly that batch's statistics), and every other module in eval mode; the batches run through
    the model without gradients (for an encoder-decoder, through the encoder only, where the towers are). Then the
    momenta and every module's train / eval mode are restored. BatchNorm layers that saw no data (e.g. the audio
    tower when the batches hold only images) keep their previous statistics.

    Args:
        model: the model (modified in place).
        batches: dicts of model inputs (as a collator returns them): a list / iterable, or a zero-argument callable
            returning one. Tensors are moved to the model's device.
        max_batches: use at most this many batches.

    Returns:
        `{"batches": n, "recomputed_layers": k, "kept_layers": [names of the layers that saw no data]}`.
    """
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    if callable(batches) and not isinstance(batches, Iterable):
        batches = batches()
    if not layers:
        return {"batches": 0, "recomputed_layers": 0, "kept_layers": []}
    saved = {
        name: (module.running_mean.clone(), module.running_var.clone(), module.num_batches_tracked.clone())
        for name, module in layers
    }
    try:
        seen = _accumulate_statistics(model, layers, batches, max_batches)
    except BaseException:  # a failed pass leaves the statistics as they were
        for name, module in layers:
            _restore(module, saved[name])
        raise
    if seen == 0:
        for name, module in layers:
            _restore(module, saved[name])
        raise ValueError("recompute_batchnorm: no batches")
    kept = []
    for name, module in layers:
        if int(module.num_batches_tracked) == 0:
            _restore(module, saved[name])
            kept.append(name)
    logger.info(
        "BatchNorm statistics recomputed on %d batches for %d layers (%d layers saw no data and keep theirs)",
        seen, len(layers) - len(kept), len(kept),
    )
    return {"batches": seen, "recomputed_layers": len(layers) - len(kept), "kept_layers": kept}
