"""`interpolation_sweep`: the paper's score-versus-alpha curves along the line between two models, as CSV and PNG."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from torch import nn

from .inputs import ModelOrStateDict
from .interpolation import interpolate_pair
from .plotting import plot_sweep


logger = logging.getLogger(__name__)


def interpolation_sweep(
    model_a: ModelOrStateDict,
    model_b: ModelOrStateDict,
    alphas: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    evaluate_fns: Mapping[str, Callable[[nn.Module], float]] | Callable[[nn.Module], float] | None = None,
    *,
    out_dir: str | Path | None = None,
    plot: bool = True,
    title: str | None = None,
    model_names: tuple[str, str] = ("model A", "model B"),
    **kwargs,
) -> list[dict]:
    """Evaluate `alpha * A + (1 - alpha) * B` for each alpha with each `evaluate_fns[task](model) -> float`.

    Returns one row per alpha: `{"alpha": alpha, task: score, ...}`. With `out_dir`, writes
    `interpolation_sweep.csv` and (with `plot=True`) `interpolation_sweep.png`: each task's score against alpha
    and, for two tasks, one task's score against the other's (the trade-off front), with `model_names` naming A and
    B on the axes. Keyword arguments go to
    `interpolate_pair` (e.g. `bn="recompute"`, `bn_batches=`, `task=`)."""
    if evaluate_fns is None:
        raise ValueError("interpolation_sweep needs evaluate_fns ({task: fn(model) -> float})")
    if callable(evaluate_fns) and not isinstance(evaluate_fns, Mapping):
        evaluate_fns = {"score": evaluate_fns}
    if not evaluate_fns:
        raise ValueError("interpolation_sweep needs at least one evaluation function")
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("interpolation_sweep needs at least one alpha")
    for alpha in alphas:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    rows = []
    for alpha in alphas:
        merged = interpolate_pair(model_a, model_b, alpha, **kwargs)
        row = {"alpha": alpha}
        for task, fn in evaluate_fns.items():
            row[task] = float(fn(merged))
        rows.append(row)
        logger.info("sweep: alpha %.3g -> %s", alpha, ", ".join(f"{k} {v:.6g}" for k, v in row.items() if k != "alpha"))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "interpolation_sweep.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["alpha", *evaluate_fns])
            writer.writeheader()
            writer.writerows(rows)
        if plot:
            plot_sweep(rows, list(evaluate_fns), out / "interpolation_sweep.png", title, model_names)
    return rows
