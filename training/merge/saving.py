"""`save_merged`: a merged model saved like any checkpoint, with its processor, its recipe and a model card."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
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
    overwrite: bool = False,
    **save_kwargs,
) -> Path:
    """Save a merged model like any checkpoint (`save_pretrained`: safetensors + config + generation config), the
    processor when given, `merge_recipe.json`, and a README.md model card (`huggingface_hub.ModelCard`) stating the
    recipe: inputs, weights, method, BatchNorm handling, generation settings. `recipe` defaults to the `merge_recipe`
    that the merge functions attach to their result. Reload with `UnivalForConditionalGeneration.from_pretrained(out_dir)`.

    The saved `generation_config.json` is a task's: the merge's `task` settings, or the inputs' own when they set a
    generation length (`ValueError` otherwise, before anything is written), so that the reloaded model generates
    with its task's settings and without warnings.

    The directory is written atomically: into a temporary directory beside `out_dir`, renamed to `out_dir` once
    complete, so an interrupted save never leaves a half-written model (nor a half-replaced one). An existing
    non-empty `out_dir` is refused (`FileExistsError`) unless `overwrite=True`, which replaces it as a whole once
    the new directory is complete (the inputs are in memory by then, so `out_dir` may be one of them)."""
    from huggingface_hub import ModelCard, ModelCardData

    recipe = recipe if recipe is not None else getattr(model, "merge_recipe", None)
    if recipe is None:
        raise ValueError("no merge recipe: pass `recipe=` (the merge functions attach one as `model.merge_recipe`)")
    if isinstance(recipe, Mapping):
        recipe = MergeRecipe.from_dict(recipe)
    if recipe.task is None:  # with a task, the merge gave the model the registry's settings of that task
        check_task_settings(model.generation_config)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is an existing file, not a directory")
    replacing = out.is_dir() and any(out.iterdir())
    if replacing and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass `overwrite=True` to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.merging-", dir=out.parent))
    try:
        model.save_pretrained(staging, **save_kwargs)
        if processor is not None:
            processor.save_pretrained(staging)
        (staging / "merge_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2, default=str) + "\n")
        card_data = ModelCardData(
            library_name="transformers", tags=["unival", "model-merging", f"merge-{recipe.method}"]
        )
        card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{recipe.to_markdown()}")
        card.save(staging / "README.md")
        _move_into_place(staging, out, replacing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful move
    logger.info("saved the merged model to %s", out)
    return out


def _move_into_place(staging: Path, out: Path, replacing: bool) -> None:
    """Renames the complete `staging` directory to `out` (same filesystem: `staging` is made beside `out`). An
    existing `out` is first renamed aside and deleted only once the new directory is in place: `out` is never a
    mix of the two, and a crash between the two renames leaves the old model in `.NAME.previous-*` beside it."""
    if not replacing:
        if out.is_dir():
            out.rmdir()  # empty (checked by the caller)
        os.replace(staging, out)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.previous-", dir=out.parent))
    os.replace(out, previous / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(previous / out.name, out)  # put the old model back
        raise
    finally:
        if out.exists():
            shutil.rmtree(previous, ignore_errors=True)
