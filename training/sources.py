"""The data of a training run: a recipe's sources loaded as `datasets` objects of schema examples
(`training.data.schema`), and a stage's selection of them concatenated into one training set.

Source specs (`training.recipe`):

- `{type: synthetic, path: DIR, num_examples: N, seed: S, ...}`: the synthetic world in `DIR`, generated there
  (by the main process) when missing; any `WorldConfig` field may be given, and a world generated with other
  settings or another generator version is refused rather than silently used;
- `{type: tsv, kind: KIND, files: [...] or {split: [...]}, media_root: DIR, on_error: raise|skip}`: original
  OFA/UnIVAL TSV files (`training.data.readers`);
- `{type: hf, path: NAME_OR_DIR, task: TASK, columns: {field: column}, split: SPLIT}`: a Hugging Face dataset.

TSV and HF sources take `derive_tasks: true` to add the matching / grounded-captioning examples the original derives
from every caption, VQA and grounding row (`training.data.derived`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from accelerate import PartialState

from training.recipe import StageSpec, check_source


def load_source(name: str, spec: dict):
    """A recipe source as a `DatasetDict` of schema examples, one `Dataset` per split. The spec is checked first
    (`training.recipe.check_source`): a misspelled or missing key is named (e.g. `file:` for `files:`) rather than
    ignored or left to fail as a bare `KeyError`."""
    loaders = {"synthetic": _load_synthetic, "tsv": _load_tsv, "hf": _load_hf}
    check_source(name, spec, require=True)
    return loaders[spec["type"]](name, spec)


def _load_synthetic(name: str, spec: dict):
    from training.data.synthetic import (
        DEFAULT_NUM_EXAMPLES, DEFAULT_SEED, GENERATOR_VERSION, WorldConfig, generate_world, load_world
    )

    options = {f.name for f in dataclasses.fields(WorldConfig)}
    path = Path(spec["path"])
    wanted = {"num_examples": DEFAULT_NUM_EXAMPLES, "seed": DEFAULT_SEED,
              **{key: value for key, value in spec.items() if key in options}}
    if not (path / "world.json").exists():
        with PartialState().main_process_first():
            if not (path / "world.json").exists():
                print(f"[data] generating the synthetic world in {path}")
                generate_world(path, **wanted)
    manifest = json.loads((path / "world.json").read_text())
    stored = manifest["config"]
    if any(key in spec and stored.get(key) != value for key, value in wanted.items()):
        def settings(values):
            return ", ".join(f"{key}={values.get(key)}" for key in wanted)

        raise ValueError(
            f"source {name!r}: the world in {path} was generated with {settings(stored)}, but the recipe asks "
            f"for {settings(wanted)}; delete it or point `path` elsewhere"
        )
    if manifest.get("generator_version") != GENERATOR_VERSION:
        raise ValueError(
            f"source {name!r}: the world in {path} was made by version {manifest.get('generator_version')} of the "
            f"generator, this is version {GENERATOR_VERSION}; delete it or point `path` elsewhere"
        )
    return load_world(path)


def _load_tsv(name: str, spec: dict):
    from datasets import DatasetDict

    from training.data.readers import read_tsv

    files = spec["files"]
    splits = files if isinstance(files, dict) else {"train": files}
    for split, paths in splits.items():
        for path in [paths] if isinstance(paths, (str, Path)) else paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"source {name!r} (type tsv), split {split!r}: {path} is not a file")
    loaded = DatasetDict({
        split: read_tsv(paths, spec["kind"], media_root=spec.get("media_root"), on_error=spec.get("on_error", "raise"))
        for split, paths in splits.items()
    })
    return _with_derived_tasks(loaded, spec)


def _load_hf(name: str, spec: dict):
    import datasets

    from training.data.readers import from_hf_dataset

    from training.cli import looks_like_path

    path = spec["path"]
    if not Path(path).exists() and looks_like_path(path):
        # `load_dataset` would take it for a hub dataset name and fail on the network
        raise FileNotFoundError(f"source {name!r} (type hf): dataset directory {path} does not exist")
    loaded = datasets.load_from_disk(path) if Path(path).exists() else datasets.load_dataset(path)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({spec.get("split", "train"): loaded})
    converted = datasets.DatasetDict(
        {split: from_hf_dataset(ds, spec["task"], spec.get("columns") or {}) for split, ds in loaded.items()}
    )
    return _with_derived_tasks(converted, spec)


def _with_derived_tasks(splits, spec: dict):
    """With `derive_tasks: true` in the source spec, the training split also holds the matching / grounded-captioning
    examples the original derives from every caption, VQA and grounding row (`training.data.derived`)."""
    if not spec.get("derive_tasks"):
        return splits
    from training.data.derived import derive_pretraining_tasks

    if "train" in splits:
        splits["train"] = derive_pretraining_tasks(splits["train"], seed=spec.get("seed", 0))
    return splits


def build_stage_dataset(stage: StageSpec, sources: dict, split: str, max_examples: int | None = None,
                        skip_missing_tasks: bool = False):
    """Concatenates the stage's examples grouped by `source/task`. Returns (dataset, {group: size}), `(None, {})`
    when nothing is left. A task the stage names but the split lacks is an error, or with `skip_missing_tasks` left
    out (a small world's validation split may hold no example of a rare task)."""
    import datasets

    parts, sizes = [], {}
    for selection in stage.datasets:
        source = sources[selection.source]
        split_name = split if split != "train" else selection.split
        if split_name not in source:
            continue
        data = source[split_name]
        if selection.difficulties and "difficulty" not in data.column_names:
            raise ValueError(f"stage {stage.name!r}: source {selection.source!r} has no `difficulty` column to "
                             f"select difficulties {selection.difficulties} from")
        limit = max_examples if max_examples is not None else selection.max_examples
        for task, indices in _task_indices(data, selection).items():
            indices = indices[:limit] if limit is not None else indices
            if not indices and skip_missing_tasks:
                continue
            if not indices:
                raise ValueError(f"stage {stage.name!r}: source {selection.source!r} has no {task!r} examples in "
                                 f"{split_name!r}")
            group = f"{selection.source}/{task}"
            sizes[group] = sizes.get(group, 0) + len(indices)
            parts.append((group, data.select(indices)))
    if not parts:
        return None, {}
    parts.sort(key=lambda item: list(sizes).index(item[0]))  # groups contiguous, in first-seen order
    return datasets.concatenate_datasets([part for _, part in parts]), sizes


def _task_indices(data, selection) -> dict[str, list[int]]:
    """{task: row indices} of the rows of `data` the selection keeps, for each task it asks for (every task of the
    data when it names none)."""
    # One Arrow read of the filter columns: iterating `data["task"]` decodes row by row (seconds per stage).
    columns = data.select_columns(["task", "modality"] + (["difficulty"] if selection.difficulties else [])).to_dict()
    allowed = set(selection.modalities) if selection.modalities else None
    levels = set(selection.difficulties) if selection.difficulties else None
    by_task: dict[str, list[int]] = {}
    for index, (task, modality) in enumerate(zip(columns["task"], columns["modality"])):
        if (allowed is None or modality in allowed) and (levels is None or columns["difficulty"][index] in levels):
            by_task.setdefault(task, []).append(index)
    return {task: by_task.get(task, []) for task in selection.tasks or sorted(by_task)}


__all__ = ["build_stage_dataset", "load_source"]
