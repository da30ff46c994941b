"""Interpolation in weight space: `interpolate` (any weights), `interpolate_pair` (`alpha * A + (1 - alpha) * B`) and
`uniform_soup`. The semantics (dtypes, integer buffers, tied weights, BatchNorm statistics, generation config) are in the
package docstring."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from processing.tasks import resolve_task

from .batchnorm import BN_MODES, Batches, recompute_batchnorm
from .checks import check_inputs, check_weights
from .generation import merged_generation_config
from .inputs import MergeInput, ModelOrStateDict, alias_groups, resolve_inputs
from .recipe import MergeRecipe


logger = logging.getLogger(__name__)


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.device != b.device or a.shape != b.shape:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return torch.equal(a, b)


def _combine(tensors: list[torch.Tensor], weights: list[float], lead: int) -> tuple[torch.Tensor, str]:
    """The merged value of one tensor group and how it was obtained ("integer", "identical" or "interpolated")."""
    first = tensors[lead]
    if not first.is_floating_point():
        return first.detach().clone(), "integer"
    active = [t for w, t in zip(weights, tensors) if w != 0.0]
    if all(_same_tensor(t, first) for t in active):
        return first.detach().clone(), "identical"
    accumulate = torch.float64 if first.dtype == torch.float64 else torch.float32
    total = torch.zeros(first.shape, dtype=accumulate, device=first.device)
    for weight, tensor in zip(weights, tensors):
        if weight != 0.0:
            total.add_(tensor.detach().to(device=first.device, dtype=accumulate), alpha=weight)
    return total.to(first.dtype), "interpolated"


def _check_batchnorm_arguments(bn: str, bn_batches) -> None:
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    if bn == "recompute" and bn_batches is None:
        raise ValueError("bn='recompute' needs `bn_batches` (batches to re-estimate the BatchNorm statistics on)")
    if bn == "interpolate" and bn_batches is not None:
        raise ValueError("`bn_batches` given but bn='interpolate': pass bn='recompute' to use them")


def _merge_tensors(
    inputs: list[MergeInput], matched: list[tuple[set[str], list[torch.Tensor]]], weights: list[float], lead: int
) -> dict[str, torch.Tensor]:
    """The merged value of every tensor name; the names of one tied group share one tensor."""
    merged_by_name: dict[str, torch.Tensor] = {}
    counts = {"interpolated": 0, "identical": 0, "integer": 0}
    for names_of_group, tensors in matched:
        value, kind = _combine(tensors, weights, lead)
        counts[kind] += 1
        for name in names_of_group:
            merged_by_name[name] = value
    logger.info(
        "merged %d inputs with weights %s: %d tensors interpolated, %d identical in every input, %d integer tensors "
        "copied from %s",
        len(inputs), [round(w, 6) for w in weights], counts["interpolated"], counts["identical"], counts["integer"],
        inputs[lead].label,
    )
    return merged_by_name


def _into_template(inputs: list[MergeInput], weights: list[float], merged_by_name: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the first model input with a nonzero weight (else of the first model input), holding the merged
    tensors. They are written into its own tensors, so its tied weights stay tied."""
    model_indices = [i for i, inp in enumerate(inputs) if inp.model is not None]
    template = inputs[next((i for i in model_indices if weights[i] > 0), model_indices[0])]
    result = template.model if template.from_peft else copy.deepcopy(template.model)  # a PEFT input is a copy already
    state = result.state_dict()
    with torch.no_grad():
        for group in alias_groups(state):
            source = next((merged_by_name[n] for n in group if n in merged_by_name), None)
            if source is None:  # cannot happen after the checks; kept as a guard
                raise ValueError(f"no merged value for {group[0]!r}")
            state[group[0]].copy_(source)
    return result


def _recipe(inputs: list[MergeInput], weights: list[float], lead: int, bn: str, task: str | None, method: str,
            details: Mapping | None) -> MergeRecipe:
    recipe = MergeRecipe(
        method=method,
        inputs=[inp.source for inp in inputs],
        weights=list(weights),
        batchnorm=bn,
        integer_buffers_from=inputs[lead].source,
        task=None if task is None else resolve_task(task).name,
        details=dict(details or {}),
    )
    peft_inputs = [inp.source for inp in inputs if inp.from_peft]
    if peft_inputs:
        recipe.details["lora_merged_inputs"] = peft_inputs
    return recipe


def interpolate(
    models: Sequence[ModelOrStateDict],
    weights: Sequence[float],
    *,
    normalize: bool = False,
    processors: Sequence | None = None,
    names: Sequence[str] | None = None,
    bn: str = "interpolate",
    bn_batches: Batches | None = None,
    task: str | None = None,
    method: str = "weighted",
    details: Mapping | None = None,
):
    """Weighted average `sum_i weights[i] * theta_i` of compatible models (see the package docstring for the exact
    semantics: integer buffers, BatchNorm statistics, tied weights, LoRA inputs, generation config).

    Args:
        models: `PreTrainedModel`s, PEFT models and / or state dicts of one architecture.
        weights: one non-negative weight per model, summing to 1 (or any non-negative weights with `normalize=True`).
        normalize: divide the weights by their sum instead of requiring a sum of 1.
        processors: optional processors or tokenizers, one per model (`None` entries allowed); their vocabularies
            must be equal.
        names: optional names of the inputs, for messages and the recipe (default: `model i` and the model's path).
        bn: `"interpolate"` (default) or `"recompute"`: re-estimate the BatchNorm statistics of the merged model on
            `bn_batches` (see `recompute_batchnorm`; needs a model input).
        bn_batches: batches (dicts of model inputs) for `bn="recompute"`: a list, or a zero-argument callable
            returning an iterable.
        task: the merged model's task (a `processing.tasks` name): its generation config becomes the original's
            settings of that task. By default it is the inputs' generation config, which must be the same in every
            model input.
        method: name of the method, recorded in the recipe.
        details: extra recipe details.

    Returns:
        A new model (a copy of the first model input with a nonzero weight, holding the merged tensors and its
        recipe in `merge_recipe`) when any input is a model; otherwise a new state dict. The inputs are not modified.
    """
    _check_batchnorm_arguments(bn, bn_batches)
    inputs = resolve_inputs(models, names)
    weights = check_weights(weights, len(inputs), normalize=normalize)
    matched = check_inputs(inputs, processors)
    lead = next(i for i, w in enumerate(weights) if w > 0)
    with_model = [inp for inp in inputs if inp.model is not None]
    if not with_model and (bn == "recompute" or task is not None):
        option = "bn='recompute'" if bn == "recompute" else "`task`"
        raise ValueError(f"{option} needs a model among the inputs (only state dicts were given)")
    generation = None
    if with_model:  # resolved before the arithmetic, so that inputs that generate differently fail fast
        generation = merged_generation_config([i.model for i in with_model], [i.label for i in with_model], task)
    merged_by_name = _merge_tensors(inputs, matched, weights, lead)
    if not with_model:
        return {name: merged_by_name[name] for name in inputs[0].state}

    result = _into_template(inputs, weights, merged_by_name)
    result.generation_config = generation
    result.merge_recipe = _recipe(inputs, weights, lead, bn, task, method, details)
    if bn == "recompute":
        summary = recompute_batchnorm(result, bn_batches)
        result.merge_recipe.batchnorm_data = f"{summary['batches']} batches"
        result.merge_recipe.details["batchnorm_recompute"] = summary
    return result


def interpolate_pair(model_a: ModelOrStateDict, model_b: ModelOrStateDict, alpha: float, **kwargs):
    """`alpha * A + (1 - alpha) * B` (the original's `lambda * A + (1 - lambda) * B`): `alpha=1` returns A,
    `alpha=0` returns B, exactly. `alpha` must lie in [0, 1]. Keyword arguments go to `interpolate` (the
    processors / names, if given, are in the order A, B)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (alpha * A + (1 - alpha) * B), got {alpha}")
    kwargs.setdefault("method", "interpolate")
    details = dict(kwargs.pop("details", None) or {})
    details.setdefault("alpha", alpha)
    return interpolate([model_a, model_b], [alpha, 1.0 - alpha], details=details, **kwargs)


def uniform_soup(models: Sequence[ModelOrStateDict], **kwargs):
    """The uniform soup: every model weighted `1 / N` (keyword arguments go to `interpolate`)."""
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    kwargs.setdefault("method", "uniform")
    kwargs.setdefault("normalize", True)  # 1/N in floating point need not sum to exactly 1
    return interpolate(models, [1.0 / len(models)] * len(models), **kwargs)
