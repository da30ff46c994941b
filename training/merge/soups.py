"""Merges built on `interpolate`: the greedy soup, "ratatouille" (finetunes of one pretrained model) and fusing."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from .batchnorm import Batches
from .checks import check_inputs
from .inputs import ModelOrStateDict, is_peft_model, resolve_inputs
from .interpolation import interpolate


logger = logging.getLogger(__name__)


@dataclass
class GreedySoupResult:
    """Outcome of `greedy_soup`.

    Attributes:
        model: the soup (uniform average of the ingredients).
        ingredients: indices (into the input list) of the models in the soup, in the order they were added.
        individual_scores: each input model's own score.
        score: the soup's score.
        history: one dict per candidate tried after the first: `candidate`, `score` (of the soup with it), `added`.
    """

    model: nn.Module
    ingredients: list[int]
    individual_scores: list[float]
    score: float
    history: list[dict]


def _score(evaluate_fn, model, what: str) -> float:
    value = float(evaluate_fn(model))
    if math.isnan(value):
        raise ValueError(f"evaluate_fn returned NaN for {what}")
    return value


def _own_scores(models: list, evaluate_fn, labels: list[str], individual_scores: Sequence[float] | None) -> list[float]:
    """Each model's own score: `individual_scores` when given, else `evaluate_fn` of each model."""
    if individual_scores is not None:
        scores = [float(s) for s in individual_scores]
        if len(scores) != len(models):
            raise ValueError(f"{len(scores)} individual scores for {len(models)} models")
        return scores
    scores = []
    for label, model in zip(labels, models):
        scores.append(_score(evaluate_fn, model, label))
        logger.info("greedy soup: %s scores %.6g", label, scores[-1])
    return scores


def _uniform_soup_of(indices: list[int], *, models: list, names: list[str] | None, bn: str, bn_batches, task):
    """The uniform soup of `models[indices]`; a soup of one model keeps its BatchNorm statistics."""
    several = len(indices) > 1
    return interpolate(
        [models[i] for i in indices],
        [1.0 / len(indices)] * len(indices),
        normalize=True,
        names=None if names is None else [names[i] for i in indices],
        bn=bn if several else "interpolate",
        bn_batches=bn_batches if several else None,
        task=task,
        method="greedy",
    )


def greedy_soup(
    models: Sequence[ModelOrStateDict],
    evaluate_fn: Callable[[nn.Module], float],
    *,
    individual_scores: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    processors: Sequence | None = None,
    bn: str = "interpolate",
    bn_batches: Batches | None = None,
    task: str | None = None,
) -> GreedySoupResult:
    """Greedy soup (Wortsman et al., 2022): sort the models by their own validation score (`evaluate_fn(model)`,
    higher is better; stable for ties), start the soup with the best one, then try each next model in that order
    and keep it only if the uniform soup with it scores at least as well as the soup without it.

    `individual_scores` skips the evaluation of the single models. With `bn="recompute"` every tried soup of two or
    more models has its BatchNorm statistics re-estimated on `bn_batches` before it is scored. All models must be
    compatible (checked first, as by `interpolate`); `task` is the soup's, as for `interpolate`. The soup is returned
    with its recipe (`model.merge_recipe`).
    """
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    inputs = resolve_inputs(models, names)
    check_inputs(inputs, processors)
    labels = [inp.label for inp in inputs]
    sources = [inp.source for inp in inputs]
    scores = _own_scores(models, evaluate_fn, labels, individual_scores)
    order = sorted(range(len(models)), key=lambda i: -scores[i])
    soup = [order[0]]
    best = scores[order[0]]
    logger.info("greedy soup: starting from %s (score %.6g)", labels[order[0]], best)
    make = functools.partial(
        _uniform_soup_of, models=models, names=None if names is None else list(names), bn=bn, bn_batches=bn_batches,
        task=task,
    )
    current = make(soup)
    history = []
    for candidate in order[1:]:
        trial = make(soup + [candidate])
        score = _score(evaluate_fn, trial, f"the soup with {labels[candidate]}")
        added = score >= best
        history.append({"candidate": candidate, "input": sources[candidate], "score": score, "added": added})
        logger.info(
            "greedy soup: + %s -> %.6g (best %.6g): %s", labels[candidate], score, best, "added" if added else "skipped"
        )
        if added:
            soup.append(candidate)
            best = score
            current = trial
    recipe = current.merge_recipe
    if bn == "recompute" and len(soup) == 1:
        recipe.details["batchnorm_note"] = "a soup of one model keeps that model's own BatchNorm statistics"
    recipe.details.update(
        {
            "individual_scores": {sources[i]: scores[i] for i in range(len(models))},
            "candidate_order": [sources[i] for i in order],
            "soup_score": best,
            "history": history,
        }
    )
    return GreedySoupResult(current, soup, scores, best, history)


def _recorded_base_models(models: list) -> list[str | None]:
    """The pretrained model each input records in `config.base_model` (`None` where it records none)."""
    recorded = []
    for model in models:
        config = getattr(model.get_base_model() if is_peft_model(model) else model, "config", None)
        recorded.append(getattr(config, "base_model", None) if config is not None else None)
    return recorded


def _shared_base_model(
    labels: list[str], recorded: list[str | None], base_model: str | None, require_base_model: bool
) -> str | None:
    """The pretrained model the inputs share by name (see `ratatouille`), `None` when none records one."""
    if base_model is not None:
        for label, name in zip(labels, recorded):
            if name is None:
                raise ValueError(f"ratatouille: {label} does not record its base model (config.base_model)")
            if name != base_model:
                raise ValueError(f"ratatouille: {label} was finetuned from {name!r}, not from {base_model!r}")
        return base_model
    known = [(label, name) for label, name in zip(labels, recorded) if name is not None]
    if known and len(known) < len(recorded):
        missing = next(label for label, name in zip(labels, recorded) if name is None)
        raise ValueError(
            f"ratatouille: {known[0][0]} records its base model ({known[0][1]!r}) but {missing} does not "
            "(config.base_model)"
        )
    for label, name in known[1:]:
        if name != known[0][1]:
            raise ValueError(
                f"ratatouille: the models start from different pretrained models: {known[0][0]} from "
                f"{known[0][1]!r}, {label} from {name!r}"
            )
    if known:
        return known[0][1]
    if require_base_model:
        raise ValueError("ratatouille: no model records its base model (config.base_model)")
    logger.warning("ratatouille: no model records its base model (config.base_model); only the architecture is checked")
    return None


def ratatouille(
    models: Sequence[ModelOrStateDict],
    weights: Sequence[float] | None = None,
    *,
    base_model: str | None = None,
    require_base_model: bool = False,
    **kwargs,
):
    """Average finetunes that started from one pretrained model ("model ratatouille", Ramé et al., 2023; UnIVAL's
    "ratatouille" averages auxiliary finetunes re-finetuned on the target task). Uniform by default, or `weights`.

    The shared start is checked in two ways:

    * always: identical architecture (every parameter name and shape, every architecture config field, as in
      `interpolate`);
    * by name, through a `base_model` attribute of the configs (the finetuning script records the pretrained
      checkpoint there: `model.config.base_model = "path/or/hub-id"`). With `base_model=` given, every model must
      record exactly that name. Without it, the models that record one must agree, and models recording one may
      not be mixed with models that do not. When none records it, only the architecture is checked (a warning
      says so), or a `ValueError` is raised with `require_base_model=True`.

    Keyword arguments go to `interpolate`. The merged model's recipe names the base model.
    """
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    names = kwargs.get("names")
    labels = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    base_model = _shared_base_model(labels, _recorded_base_models(models), base_model, require_base_model)
    if weights is None:
        weights = [1.0 / len(models)] * len(models)
        kwargs.setdefault("normalize", True)
    kwargs.setdefault("method", "ratatouille")
    merged = interpolate(models, weights, **kwargs)
    if isinstance(merged, nn.Module):
        merged.merge_recipe.base_model = base_model
    return merged


def fuse(
    models: Sequence[ModelOrStateDict],
    finetune_fn: Callable[[nn.Module], nn.Module | None],
    weights: Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """"Fusing": average the models (uniformly, or with `weights`), then finetune the average briefly with
    `finetune_fn(model) -> model` (or `None` when it trains in place). The training loop is the caller's; this
    is the composition. Keyword arguments go to `interpolate`. Returns the finetuned model with its recipe."""
    models = list(models)
    if not models:
        raise ValueError("nothing to merge: `models` is empty")
    if weights is None:
        weights = [1.0 / len(models)] * len(models)
        kwargs.setdefault("normalize", True)
    kwargs.setdefault("method", "fusing")
    average = interpolate(models, weights, **kwargs)
    if not isinstance(average, nn.Module):
        raise ValueError("fuse needs at least one model among the inputs (only state dicts were given)")
    recipe = average.merge_recipe
    logger.info("fusing: finetuning the average with %s", getattr(finetune_fn, "__name__", repr(finetune_fn)))
    result = finetune_fn(average)
    result = average if result is None else result
    recipe.details["then_finetuned_with"] = getattr(finetune_fn, "__name__", repr(finetune_fn))
    result.merge_recipe = recipe
    return result
