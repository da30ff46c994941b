"""Training recipes: one YAML/JSON file declares a run's model, data sources and curriculum stages.

```yaml
name: synthetic-tiny
seed: 0
model: {preset: unival-tiny, overrides: {d_model: 64}}   # or {init_from: path/to/checkpoint}
# + init: {text: bart.base/model.pt, image: resnet101_a1h-36d3f2aa.pth}   (pretrained parts, the original's starts)
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
    model: {towers: {video: all_resnext101}, init: {video: resnext-101-kinetics.pth}}   # adds a pretrained tower
```

`init:` takes the parts of `modeling_unival.conversion.init_from_parts` (`text`, `image`, `video`, `audio`,
`audio_front_end`); `towers:` adds a video / audio tower (a backbone name or config fields) to a model without one,
as the original's stage 2 adds the video tower to the stage-1 model.

Relative paths in a recipe are resolved against the current directory (not the recipe file), so shipped recipes
run from the project root and write under `outputs/`. Any value can be changed without copying the file:
`load_recipe(name, ["sources.world.num_examples=200", "stages.video.training.max_steps=50"])` (`apply_overrides`;
on the command line, `training/pretrain.py --set ...`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from processing.tasks import resolve_task


SOURCE_TYPES = ("synthetic", "tsv", "hf")
# The keys of each source type besides `type` (the synthetic world's are `WorldConfig`'s fields, see `source_keys`),
# and the ones it cannot do without. `seed` is the seed of `derive_tasks`.
SOURCE_KEYS = {
    "tsv": {"kind", "files", "media_root", "on_error", "derive_tasks", "seed"},
    "hf": {"path", "task", "columns", "split", "derive_tasks", "seed"},
}
REQUIRED_SOURCE_KEYS = {"synthetic": ("path",), "tsv": ("kind", "files"), "hf": ("path", "task")}
RECIPE_KEYS = ("name", "seed", "model", "processor", "sources", "stages")
# `model:` builds the first stage's model from a preset (with config overrides), or loads it with `init_from`.
MODEL_KEYS = ("preset", "overrides", "init_from", "init")
#: The size settings of recipes and finetunes: (sub-processor, attribute) each sets; square sizes are
#: stored as `{"height": n, "width": n}`, as the sub-processors keep them.
PROCESSOR_SIZES = {
    "image_size": ("image_processor", "size"),
    "num_frames": ("video_processor", "num_frames"),
    "video_crop_size": ("video_processor", "crop_size"),
    "audio_max_length": ("feature_extractor", "max_length"),
}
PROCESSOR_SETTINGS = (*PROCESSOR_SIZES, "prompt_types")
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
# Config fields a stage may change: both are read at every forward pass, so they take effect on a built model.
STAGE_MODEL_FIELDS = ("sample_patch_num", "label_smoothing")
# A stage's `model:` section: those fields, towers to add and pretrained parts to load when the stage starts.
STAGE_MODEL_KEYS = (*STAGE_MODEL_FIELDS, "towers", "init")


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
    # training-time config fields (sample_patch_num, label_smoothing), `towers` to add and parts to `init`
    model: dict[str, Any] = field(default_factory=dict)
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


def check_keys(
    where: str, mapping: Any, allowed: Iterable[str], required: Iterable[str] = (), kind: str = "key"
) -> None:
    """Refuses a `mapping` with keys outside `allowed` (each named with its closest allowed key) or without one of
    `required`: every section of a recipe is checked, because a misspelled key is otherwise silently ignored
    (`init_form:` trains a fresh default model) or fails far from the recipe with a bare `KeyError`."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {mapping!r}")
    allowed = sorted(set(allowed))
    unknown = sorted(str(key) for key in mapping if key not in allowed)
    if unknown:
        closest = {key: close[0] for key in unknown if (close := difflib.get_close_matches(key, allowed, n=1))}
        if len(unknown) == 1 and closest:
            hint = f" (did you mean {closest[unknown[0]]!r}?)"
        else:
            hint = f" (did you mean {', '.join(f'{v!r} for {k!r}' for k, v in closest.items())}?)" if closest else ""
        # A long list (TrainingArguments has ~150 fields) would bury the suggestion.
        listed = f"; allowed: {allowed}" if len(allowed) <= 30 else ""
        raise ValueError(f"{where}: unknown {kind}(s) {unknown}{hint}{listed}")
    missing = [key for key in required if key not in mapping]
    if missing:
        raise ValueError(f"{where}: missing {kind}(s) {missing}")


def source_keys(source_type: str) -> set[str]:
    """The keys a source of `source_type` may have besides `type`."""
    if source_type == "synthetic":
        from training.data.synthetic import WorldConfig

        return {"path"} | {f.name for f in dataclasses.fields(WorldConfig)}
    return SOURCE_KEYS[source_type]


def check_source(name: str, spec: Any, require: bool = False) -> None:
    """Validates a source spec: its type and its keys (did-you-mean on a typo); with `require`, also the keys its
    loader needs (a recipe may leave e.g. a synthetic world's `path` to `--set`)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"source {name!r}: expected a mapping, got {spec!r}")
    if spec.get("type") not in SOURCE_TYPES:
        raise ValueError(f"source {name!r}: type must be one of {SOURCE_TYPES}, got {spec.get('type')!r}")
    kind = "synthetic-world option" if spec["type"] == "synthetic" else "key"
    check_keys(
        f"source {name!r} (type {spec['type']})",
        spec,
        {"type"} | source_keys(spec["type"]),
        REQUIRED_SOURCE_KEYS[spec["type"]] if require else (),
        kind=kind,
    )


def _check_init(where: str, init: Any) -> None:
    from modeling_unival.conversion.parts import AUDIO_FRONT_ENDS, PARTS

    check_keys(f"{where} init", init, (*PARTS, "audio_front_end"))
    for part in PARTS:
        if part in init and not isinstance(init[part], str):
            raise ValueError(f"{where} init: {part} must be a path or hub id, got {init[part]!r}")
    if init.get("audio_front_end", "model") not in AUDIO_FRONT_ENDS:
        raise ValueError(f"{where} init: audio_front_end must be one of {AUDIO_FRONT_ENDS}, got {init['audio_front_end']!r}")


def _check_model(model: Any) -> None:
    check_keys("model", model, MODEL_KEYS)
    if "init" in model:
        _check_init("model", model["init"])
    if model.get("init_from") and ({"preset", "overrides"} & set(model)):
        raise ValueError("model: give `init_from` or `preset` / `overrides`, not both (a loaded model keeps its config)")
    overrides = model.get("overrides") or {}
    if overrides:
        from modeling_unival import UnivalConfig

        check_keys("model overrides", overrides, UnivalConfig().to_dict(), kind="config field")


def _training_argument_fields() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


def parse_recipe(data: dict[str, Any]) -> Recipe:
    """Validates a recipe dict (see the module docstring) and builds a `Recipe`."""
    if not isinstance(data, dict):
        raise ValueError("a recipe must be a mapping")
    check_keys("recipe", data, RECIPE_KEYS)
    _check_model(data.get("model") or {})
    check_keys("processor", data.get("processor") or {}, PROCESSOR_SETTINGS, kind="processor setting")
    sources = data.get("sources") or {}
    if not isinstance(sources, Mapping):
        raise ValueError(f"sources: expected a mapping of named sources, got {sources!r}")
    for name, source in sources.items():
        check_source(name, source)
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
    check_keys(where, raw, StageSpec.__dataclass_fields__)
    selections = []
    for selection in raw.get("datasets") or []:
        check_keys(f"{where} dataset", selection, DatasetSelection.__dataclass_fields__)
        if selection.get("source") not in sources:
            raise ValueError(f"{where}: unknown source {selection.get('source')!r}; sources: {sorted(sources)}")
        selections.append(DatasetSelection(**selection))
    if not selections:
        raise ValueError(f"{where}: no datasets")
    stage_model = raw.get("model") or {}
    check_keys(f"{where} model", stage_model, STAGE_MODEL_KEYS)
    if "towers" in stage_model:
        check_keys(f"{where} model towers", stage_model["towers"], ("video", "audio"))
    if "init" in stage_model:
        _check_init(f"{where} model", stage_model["init"])
    check_keys(f"{where} processor", raw.get("processor") or {}, PROCESSOR_SETTINGS, kind="processor setting")
    check_keys(f"{where} training", raw.get("training") or {}, _training_argument_fields(), kind="TrainingArguments field")
    sampling = raw.get("sampling") or {}
    check_keys(f"{where} sampling", sampling, {"temperature", "weights"})
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
        if not isinstance(node, dict):
            raise ValueError(f"--set {assignment!r}: {'.'.join(parts[:-1])} is a list, not a mapping")
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"--set {assignment!r}: the value is not valid YAML ({_one_line(error)})") from None
    return data


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _override_child(node, part: str, above: list[str], assignment: str):
    """`node[part]` for `apply_overrides` (a stage found by name); a missing mapping is created, except a source or
    a stage: the keys set are validated with the rest of the recipe."""
    if above == ["stages"]:
        named = {_stage_name(stage, index): stage for index, stage in enumerate(node)}
        if part not in named:
            raise ValueError(f"--set {assignment!r}: the recipe has no stage {part!r}; stages: {list(named)}")
        return named[part]
    if not isinstance(node, dict):
        raise ValueError(f"--set {assignment!r}: {'.'.join(above)} is a list, not a mapping")
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
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValueError(f"recipe {path}: not valid {kind} ({_one_line(error)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return parse_recipe(apply_overrides(data, overrides))


__all__ = [
    "DatasetSelection",
    "Recipe",
    "StageSpec",
    "apply_overrides",
    "check_keys",
    "check_source",
    "load_recipe",
    "parse_recipe",
]
