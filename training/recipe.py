"""Training recipes: one YAML/JSON file declares a run's model, data sources and curriculum stages.

```yaml
name: synthetic-tiny
seed: 0
model: {preset: unival-tiny, overrides: {d_model: 64}}   # or {init_from: path/to/checkpoint}
processor: {image_size: 128, num_frames: 8, video_crop_size: 64, audio_max_length: 96000}   # + prompt_types
sources:
  world: {type: synthetic, path: outputs/world, num_examples: 4000, seed: 0}   # + any WorldConfig field
  coco: {type: tsv, kind: caption, files: [data/caption_train.tsv], media_root: data/images}
  vqa: {type: hf, path: data/vqa_arrow, task: vqa, columns: {image: image, question: question, answers: answers}}
stages:
  - name: image_text
    datasets: [{source: world, tasks: [caption, vqa, visual_grounding]}]   # + modalities, difficulties, max_examples
    sampling: {temperature: 2.0}            # or {weights: {caption: 0.5, vqa: 0.3, visual_grounding: 0.2}}
    processor: {image_size: 96}             # stage-specific processor settings (e.g. resolution)
    training: {max_steps: 300, learning_rate: 1.0e-3, per_device_train_batch_size: 16}
    generation_task: caption                # the inference settings saved with the stage's model (the default)
  - name: video                             # starts from the previous stage's weights
    datasets: [{source: world, tasks: [caption, vqa, video_caption, video_qa]}]
```

Relative paths in a recipe are resolved against the current directory (not the recipe file), so shipped recipes
run from the project root and write under `outputs/`. Any value can be changed without copying the file:
`load_recipe(name, ["sources.world.num_examples=200", "stages.video.training.max_steps=50"])` (`apply_overrides`;
on the command line, `training/pretrain.py --set ...`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processing.tasks import resolve_task


SOURCE_TYPES = ("synthetic", "tsv", "hf")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
# Config fields a stage may change: both are read at every forward pass, so they take effect on a built model.
STAGE_MODEL_FIELDS = ("sample_patch_num", "label_smoothing")


@dataclass
class DatasetSelection:
    """Which examples of a source a stage uses."""

    source: str
    tasks: list[str] | None = None  # None: every task of the source
    modalities: list[str] | None = None  # None: every modality (e.g. keep only image qa_matching in an image stage)
    # None: every difficulty level; e.g. [1] to start a curriculum on the synthetic world's simplest scenes
    difficulties: list[int] | None = None
    split: str = "train"
    max_examples: int | None = None


@dataclass
class StageSpec:
    name: str
    datasets: list[DatasetSelection]
    sampling: dict[str, Any] = field(default_factory=dict)  # {"temperature": T} or {"weights": {group: w}}
    processor: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # training-time config fields: sample_patch_num, label_smoothing
    training: dict[str, Any] = field(default_factory=dict)  # TrainingArguments fields
    eval_split: str | None = "validation"
    eval_max_examples: int | None = 50  # per task: the stage's validation loss, not its generation metrics
    init_from: str | None = None  # None: previous stage (or the recipe's model for the first stage)
    # The task whose inference settings (`processing.tasks.generation_config`) the stage's saved model carries in its
    # generation_config.json: what a plain `generate()` of a multitask model does.
    generation_task: str = "caption"


@dataclass
class Recipe:
    name: str
    stages: list[StageSpec]
    sources: dict[str, dict[str, Any]]
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "unival-tiny"})
    processor: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ValueError(f"recipe {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")


def _require_keys(where: str, mapping: dict, allowed: set[str]) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def parse_recipe(data: dict[str, Any]) -> Recipe:
    """Validates a recipe dict (see the module docstring) and builds a `Recipe`."""
    if not isinstance(data, dict):
        raise ValueError("a recipe must be a mapping")
    _require_keys("recipe", data, {"name", "seed", "model", "processor", "sources", "stages"})
    sources = data.get("sources") or {}
    for name, source in sources.items():
        if source.get("type") not in SOURCE_TYPES:
            raise ValueError(f"source {name!r}: type must be one of {SOURCE_TYPES}, got {source.get('type')!r}")
    stages = [_parse_stage(raw, index, sources) for index, raw in enumerate(data.get("stages") or [])]
    if not stages:
        raise ValueError("a recipe needs at least one stage")
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    return Recipe(
        name=data.get("name", "recipe"),
        stages=stages,
        sources=sources,
        model=data.get("model") or {"preset": "unival-tiny"},
        processor=data.get("processor") or {},
        seed=int(data.get("seed", 0)),
    )


def _parse_stage(raw: dict[str, Any], index: int, sources: dict) -> StageSpec:
    where = f"stage {raw.get('name', index)!r}"
    _require_keys(where, raw, {f.name for f in StageSpec.__dataclass_fields__.values()})
    selections = []
    for selection in raw.get("datasets") or []:
        _require_keys(f"{where} dataset", selection, set(DatasetSelection.__dataclass_fields__))
        if selection.get("source") not in sources:
            raise ValueError(f"{where}: unknown source {selection.get('source')!r}; sources: {sorted(sources)}")
        selections.append(DatasetSelection(**selection))
    if not selections:
        raise ValueError(f"{where}: no datasets")
    _require_keys(f"{where} model", raw.get("model") or {}, set(STAGE_MODEL_FIELDS))
    sampling = raw.get("sampling") or {}
    _require_keys(f"{where} sampling", sampling, {"temperature", "weights"})
    if "temperature" in sampling and "weights" in sampling:
        raise ValueError(f"{where}: give sampling weights or a temperature, not both")
    values = {**raw, "name": _stage_name(raw, index), "datasets": selections}
    if "generation_task" in raw:
        try:
            values["generation_task"] = resolve_task(raw["generation_task"]).name
        except ValueError as error:
            raise ValueError(f"{where}: generation_task: {error}") from None
    return StageSpec(**values)


def apply_overrides(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """A copy of the recipe dict `data` with `KEY.PATH=VALUE` assignments applied (the pretraining command line's
    `--set`), e.g. `sources.world.path=/tmp/world`, `sources.world.num_examples=200`,
    `stages.image_text.training.max_steps=100`. A stage is named by its `name`; VALUE is read as YAML (`200` is a
    number, `true` a boolean, `[a, b]` a list, `{a: 1}` a mapping). The sources and stages named must exist; the
    keys set are checked as the recipe's own are (`parse_recipe`, and each source's loader)."""
    data = copy.deepcopy(data)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. sources.world.num_examples=200")
        node = data
        for depth, part in enumerate(parts[:-1]):
            node = _override_child(node, part, parts[:depth], assignment)
        node[parts[-1]] = yaml.safe_load(text)
    return data


def _override_child(node, part: str, above: list[str], assignment: str):
    """`node[part]` for `apply_overrides` (a stage found by name); a missing mapping is created, except a source or
    a stage: the keys set are validated with the rest of the recipe."""
    if above == ["stages"]:
        named = {_stage_name(stage, index): stage for index, stage in enumerate(node)}
        if part not in named:
            raise ValueError(f"--set {assignment!r}: the recipe has no stage {part!r}; stages: {list(named)}")
        return named[part]
    if above == ["sources"] and part not in node:
        raise ValueError(f"--set {assignment!r}: the recipe has no source {part!r}; sources: {sorted(node)}")
    child = node.setdefault(part, {})
    if not isinstance(child, (dict, list)):
        raise ValueError(f"--set {assignment!r}: {'.'.join(above + [part])} is {child!r}, not a mapping")
    return child


def _stage_name(raw: dict[str, Any], index: int) -> str:
    return raw.get("name", f"stage{index + 1}")


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Loads a recipe file (.yaml/.yml/.json), with `apply_overrides` assignments applied; a bare name loads a shipped
    recipe from `training/recipes/`."""
    path = Path(path)
    if not path.exists() and not path.suffix:
        for suffix in (".yaml", ".json"):
            if (RECIPES_DIR / f"{path.name}{suffix}").exists():
                path = RECIPES_DIR / f"{path.name}{suffix}"
                break
    if not path.exists():
        raise FileNotFoundError(f"no recipe at {path}; shipped recipes: {sorted(p.stem for p in RECIPES_DIR.glob('*.yaml'))}")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return parse_recipe(apply_overrides(data, overrides))


__all__ = ["DatasetSelection", "Recipe", "StageSpec", "apply_overrides", "load_recipe", "parse_recipe"]
