"""The figure of an interpolation sweep: one panel per task, each with its own score axis, and for two tasks their
trade-off front."""

from __future__ import annotations

from pathlib import Path


def plot_sweep(rows: list[dict], tasks: list[str], path: Path, title: str | None,
               model_names: tuple[str, str] = ("model A", "model B")) -> None:
    """Writes `sweep_figure` to `path`."""
    sweep_figure(rows, tasks, title, model_names).savefig(path)


def sweep_figure(rows: list[dict], tasks: list[str], title: str | None = None,
                 model_names: tuple[str, str] = ("model A", "model B")):
    """The figure of `rows` (`{"alpha": a, task: score, ...}` for `alpha * A + (1 - alpha) * B`): one panel per task
    with its own score axis, and the trade-off front of two tasks. `model_names` name A and B on the axes, so the
    figure reads without the code that made it."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    name_a, name_b = model_names
    front = len(tasks) == 2
    panels = len(tasks) + int(front)
    figure = Figure(figsize=(4.6 * panels, 4.2), dpi=110)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    alphas = [row["alpha"] for row in rows]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for index, (task, axis) in enumerate(zip(tasks, axes)):
        scores = [row[task] for row in rows]
        axis.plot(alphas, scores, marker="o", color=colors[index % len(colors)])
        axis.set_title(task, fontsize=12)
        axis.set_xlabel(f"alpha\n0 = {name_b}   ·   1 = {name_a}", fontsize=10)
        axis.set_ylabel(task, fontsize=10)
        axis.set_xlim(-0.03, 1.03)
        axis.grid(alpha=0.3)
        best = max(range(len(scores)), key=scores.__getitem__)
        axis.margins(y=0.12)
        axis.annotate(f"best {scores[best]:.1f} (alpha {alphas[best]:g})", (alphas[best], scores[best]),
                      textcoords="offset points", xytext=(0, -16), ha="center", fontsize=9)
    if front:
        first, second = tasks
        axis = axes[-1]
        axis.plot([row[first] for row in rows], [row[second] for row in rows], marker="o", color="tab:gray")
        for row in rows:
            axis.annotate(f"{row['alpha']:g}", (row[first], row[second]), textcoords="offset points",
                          xytext=(4, 4), fontsize=8)
        axis.set_title("trade-off (labels: alpha)", fontsize=12)
        axis.set_xlabel(first, fontsize=10)
        axis.set_ylabel(second, fontsize=10)
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    return figure
