"""`save_merged`: a merged model saved like any checkpoint, with its processor, its recipe and a model card."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from .generation import check_task_settings
from .recipe import MergeRecipe


logger = logging.getLogger(__name__)


def save_merged(
    model: nn.Module,
    out_dir: str | Path,
    processor=None,
    recipe: MergeRecipe | Mapping | None = None,
    **save_kwargs,
) -> Path:
    """Save a merged model like any checkpoint (`save_pretrained`: safetensors + config + generation config), the
    processor when given, `merge_recipe.json`, and a README.md model card (`huggingface_hub.ModelCard`) stating the
    recipe: inputs, weights, method, BatchNorm handling, generation settings. `recipe` defaults to the `merge_recipe`
    that the merge functions attach to their result. Reload with `UnivalForConditionalGeneration.from_pretrained(out_dir)`.

    The saved `generation_config.json` is a task's: the merge's `task` settings, or the inputs' own when they set a
    generation length (`ValueError` otherwise, before anything is written), so that the reloaded model generates
    with its task's settings and without warnings."""
    from huggingface_hub import ModelCard, ModelCardData

    recipe = recipe if recipe is not None else getattr(model, "merge_recipe", None)
    if recipe is None:
        raise ValueError("no merge recipe: pass `recipe=` (the merge functions attach one as `model.merge_recipe`)")
    if isinstance(recipe, Mapping):
        recipe = MergeRecipe.from_dict(recipe)
    if recipe.task is None:  # with a task, the merge gave the model the registry's settings of that task
        check_task_settings(model.generation_config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, **save_kwargs)
    if processor is not None:
        processor.save_pretrained(out)
    (out / "merge_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2, default=str) + "\n")
    card_data = ModelCardData(library_name="transformers", tags=["unival", "model-merging", f"merge-{recipe.method}"])
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{recipe.to_markdown()}")
    card.save(out / "README.md")
    logger.info("saved the merged model to %s", out)
    return out
