"""The figure of an interpolation sweep: each task's score against alpha, and for two tasks their trade-off front."""

from __future__ import annotations

from pathlib import Path


def plot_sweep(rows: list[dict], tasks: list[str], path: Path, title: str | None) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    panels = 2 if len(tasks) == 2 else 1
    figure = Figure(figsize=(5 * panels, 4), dpi=100)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    alphas = [row["alpha"] for row in rows]
    for task in tasks:
        axes[0].plot(alphas, [row[task] for row in rows], marker="o", label=task)
    axes[0].set_xlabel("alpha (weight of model A; 0 = B, 1 = A)")
    axes[0].set_ylabel("score")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if panels == 2:
        first, second = tasks
        axes[1].plot([row[first] for row in rows], [row[second] for row in rows], marker="o")
        for row in rows:
            axes[1].annotate(f"{row['alpha']:g}", (row[first], row[second]), fontsize=8)
        axes[1].set_xlabel(first)
        axes[1].set_ylabel(second)
        axes[1].grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
