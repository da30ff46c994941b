"""`MergeRecipe`: how a merged model was made, written into its model card and `merge_recipe.json`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


@dataclass
class MergeRecipe:
    """How a merged model was made; `save_merged` writes it into the model card and `merge_recipe.json`.

    Attributes:
        method: `"weighted"`, `"uniform"`, `"interpolate"`, `"greedy"`, `"ratatouille"` or `"fusing"`.
        inputs: one name per ingredient (a path when the model was loaded from one).
        weights: the weight of each ingredient (after normalisation).
        batchnorm: `"interpolate"` or `"recompute"`.
        batchnorm_data: what the statistics were recomputed on (with `"recompute"`).
        integer_buffers_from: the input whose integer buffers (`num_batches_tracked`) were copied.
        base_model: the shared pretrained start (ratatouille), when known.
        task: the task whose registry generation settings the merged model got (`None`: the inputs' own, the same
            in every input).
        details: anything else (greedy-soup scores, alpha, LoRA inputs, the command line).
    """

    method: str
    inputs: list[str]
    weights: list[float]
    batchnorm: str = "interpolate"
    batchnorm_data: str | None = None
    integer_buffers_from: str | None = None
    base_model: str | None = None
    task: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "MergeRecipe":
        return cls(**dict(data))

    def formula(self) -> str:
        if self.method == "interpolate" and len(self.weights) == 2:
            return f"{self.weights[0]:g} * A + {self.weights[1]:g} * B  (A = {self.inputs[0]}, B = {self.inputs[1]})"
        return " + ".join(f"{w:g} * theta_{i}" for i, w in enumerate(self.weights))

    def to_markdown(self) -> str:
        lines = [
            "# Merged UnIVAL model",
            "",
            "This model was made by weight-space merging (`training.merge`), as in UnIVAL's multimodal model merging "
            "(Shukor et al., TMLR 2023). It loads like any other checkpoint: "
            "`UnivalForConditionalGeneration.from_pretrained(path)`.",
            "",
            "## Merge recipe",
            "",
            f"- **Method:** {self.method}",
            f"- **Formula:** `theta = {self.formula()}`",
        ]
        if self.base_model:
            lines.append(f"- **Shared pretrained model:** {self.base_model}")
        lines += ["", "| # | input | weight |", "|---|---|---|"]
        lines += [f"| {i} | {name} | {weight:.6g} |" for i, (name, weight) in enumerate(zip(self.inputs, self.weights))]
        lines += ["", *self._handling_notes()]
        shown = {k: v for k, v in self.details.items() if k != "command"}
        if shown:
            lines += ["", "## Details", "", "```json", json.dumps(shown, indent=2, default=str), "```"]
        if self.details.get("command"):
            lines += ["", "## Reproduce", "", "```bash", str(self.details["command"]), "```"]
        return "\n".join(lines) + "\n"

    def _handling_notes(self) -> list[str]:
        """One bullet each for the BatchNorm statistics, the integer buffers, the tied weights and the generation
        settings."""
        if self.batchnorm == "recompute":
            data = f" on {self.batchnorm_data}" if self.batchnorm_data else ""
            batchnorm = (
                f"- **BatchNorm running statistics:** recomputed{data} after merging (cumulative average over the "
                "batches, BatchNorm layers in train mode, everything else in eval mode); layers that saw no data "
                "keep the interpolated statistics."
            )
        else:
            batchnorm = "- **BatchNorm running statistics:** interpolated with the same weights as the parameters."
        if self.task:
            generation = f"the original's settings for `{self.task}` (`processing.tasks`)"
        else:
            generation = "those of the inputs (the same in every input)"
        return [
            batchnorm,
            "- **Integer buffers** (`num_batches_tracked`, ...): copied from "
            f"{self.integer_buffers_from or 'the first input with a nonzero weight'}, not averaged.",
            "- **Tied weights:** each group of tied tensors (`model.shared.weight` with `lm_head.weight` and the "
            "encoder / decoder token embeddings) is merged once and stays tied.",
            f"- **Generation settings** (`generation_config.json`): {generation}.",
        ]
