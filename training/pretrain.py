"""Multitask pretraining of UnIVAL with task balancing and a multimodal curriculum, on `transformers.Trainer`.

    python training/pretrain.py --recipe synthetic_tiny --output_dir outputs/pretrain
    accelerate launch --multi_gpu --num_processes 2 training/pretrain.py --recipe synthetic_tiny --output_dir ...
    python training/pretrain.py --recipe my_recipe.yaml --stages video --resume_from_checkpoint true

A recipe (`training/recipe.py`) lists the data sources and the curriculum stages; each stage starts from the
previous stage's weights, has its own datasets, task mixture, processor settings (resolution, frames) and
schedule, and is written to `OUTPUT_DIR/STAGE/final`. A finished stage is skipped when the run is restarted, so a
stage can be resumed or rerun on its own (`--stages NAME`). Any `TrainingArguments` flag given on the command line
overrides the recipe's value for every stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python training/pretrain.py` / `accelerate launch training/pretrain.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import PartialState
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from training.allocator import keep_freed_memory
from training.recipe import Recipe, StageSpec, load_recipe
from training.sampling import TaskBalancedSampler, mixture_weights


logger = logging.getLogger("training.pretrain")

# TrainingArguments every UnIVAL run needs, whatever the recipe says.
REQUIRED_TRAINING_ARGS = {
    "remove_unused_columns": False,  # multimodal examples: the collator, not Trainer, picks the columns
    "label_names": ["labels"],
}
DEFAULT_TRAINING_ARGS = {
    "report_to": [],
    "logging_steps": 10,
    "per_device_eval_batch_size": 32,
    "save_strategy": "steps",
    "save_steps": 200,
    "save_total_limit": 2,
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": torch.cuda.is_available(),
    "lr_scheduler_type": "linear",  # the original's polynomial decay with power 1 and end lr 0
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "weight_decay": 0.01,
    "max_grad_norm": 5.0,  # pretraining clip norm of the original
    # Ranks whose batches hold different modalities run different towers: DDP must look for unused parameters.
    "ddp_find_unused_parameters": True,
}


@dataclass
class PretrainArguments:
    recipe: str = field(default="synthetic_tiny", metadata={"help": "recipe file, or the name of a shipped recipe"})
    stages: str | None = field(default=None, metadata={"help": "comma-separated stage names to run (default: all)"})
    overwrite_stages: bool = field(default=False, metadata={"help": "rerun stages whose final model exists"})


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def load_source(name: str, spec: dict):
    """A recipe source as a `DatasetDict` (synthetic world) or a `Dataset` (one split) of schema examples."""
    kind = spec["type"]
    if kind == "synthetic":
        from training.data.synthetic import (
            DEFAULT_NUM_EXAMPLES, DEFAULT_SEED, GENERATOR_VERSION, WorldConfig, generate_world, load_world
        )

        options = {f.name for f in dataclasses.fields(WorldConfig)}
        unknown = set(spec) - options - {"type", "path"}
        if unknown:
            raise ValueError(f"source {name!r}: unknown synthetic-world option(s) {sorted(unknown)}; "
                             f"choose from {sorted(options)}")
        path = Path(spec["path"])
        wanted = {"num_examples": DEFAULT_NUM_EXAMPLES, "seed": DEFAULT_SEED,
                  **{key: value for key, value in spec.items() if key in options}}
        if not (path / "world.json").exists():
            with PartialState().main_process_first():
                if not (path / "world.json").exists():
                    print(f"[pretrain] generating the synthetic world in {path}")
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
    if kind == "tsv":
        from training.data.readers import read_tsv

        files = spec["files"]
        splits = files if isinstance(files, dict) else {"train": files}
        from datasets import DatasetDict

        loaded = DatasetDict(
            {
                split: read_tsv(paths, spec["kind"], media_root=spec.get("media_root"), on_error=spec.get("on_error", "raise"))
                for split, paths in splits.items()
            }
        )
        return _with_derived_tasks(loaded, spec)
    if kind == "hf":
        import datasets

        from training.data.readers import from_hf_dataset

        loaded = datasets.load_from_disk(spec["path"]) if Path(spec["path"]).exists() else datasets.load_dataset(spec["path"])
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({spec.get("split", "train"): loaded})
        converted = datasets.DatasetDict(
            {split: from_hf_dataset(ds, spec["task"], spec.get("columns") or {}) for split, ds in loaded.items()}
        )
        return _with_derived_tasks(converted, spec)
    raise ValueError(f"source {name!r}: unknown type {kind!r}")


def _with_derived_tasks(splits, spec: dict):
    """With `derive_tasks: true` in the source spec, the training split also holds the matching / grounded-captioning
    examples the original derives from every caption, VQA and grounding row (`training.data.derived`)."""
    if not spec.get("derive_tasks"):
        return splits
    from training.data.derived import derive_pretraining_tasks

    if "train" in splits:
        splits["train"] = derive_pretraining_tasks(splits["train"], seed=spec.get("seed", 0))
    return splits


def build_stage_dataset(stage: StageSpec, sources: dict, split: str, max_examples: int | None = None):
    """Concatenates the stage's examples grouped by `source/task`. Returns (dataset, {group: size})."""
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
        # One Arrow read of the filter columns: iterating `data["task"]` decodes row by row (seconds per stage).
        columns = data.select_columns(["task", "modality"] + (["difficulty"] if selection.difficulties else [])).to_dict()
        allowed = set(selection.modalities) if selection.modalities else None
        levels = set(selection.difficulties) if selection.difficulties else None
        by_task: dict[str, list[int]] = {}
        for index, (task, modality) in enumerate(zip(columns["task"], columns["modality"])):
            if (allowed is None or modality in allowed) and (levels is None or columns["difficulty"][index] in levels):
                by_task.setdefault(task, []).append(index)
        for task in selection.tasks or sorted(by_task):
            indices = by_task.get(task, [])
            if max_examples is not None:
                indices = indices[:max_examples]
            elif selection.max_examples is not None:
                indices = indices[: selection.max_examples]
            if not indices:
                raise ValueError(f"stage {stage.name!r}: source {selection.source!r} has no {task!r} examples in {split_name!r}")
            group = f"{selection.source}/{task}"
            sizes[group] = sizes.get(group, 0) + len(indices)
            parts.append((group, data.select(indices)))
    if not parts:
        return None, {}
    parts.sort(key=lambda item: list(sizes).index(item[0]))  # groups contiguous, in first-seen order
    return datasets.concatenate_datasets([part for _, part in parts]), sizes


class TaskCountingCollator:
    """Wraps the multitask collator and counts the tasks of every batch it builds (realised task mixture)."""

    def __init__(self, collator):
        self.collator = collator
        self.counts: Counter = Counter()

    def __call__(self, examples):
        self.counts.update(example["task"] for example in examples)
        return self.collator(examples)


class TaskMixtureCallback(TrainerCallback):
    """Adds the realised task proportions (this process's batches so far) to Trainer's logs."""

    def __init__(self, counter: TaskCountingCollator):
        self.counter = counter

    def on_log(self, args, state, control, logs=None, **kwargs):
        total = sum(self.counter.counts.values())
        if logs is not None and total and "loss" in logs:
            for task, count in sorted(self.counter.counts.items()):
                logs[f"task_fraction/{task}"] = round(count / total, 4)


class UnivalTrainer(Trainer):
    """`Trainer` whose training batches are drawn by a [`TaskBalancedSampler`]."""

    def __init__(self, *args, task_sampler: TaskBalancedSampler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_sampler = task_sampler

    def _get_train_sampler(self, train_dataset=None):
        if self.task_sampler is not None:
            return self.task_sampler
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not return_outputs:
            # A training step needs the loss only: project to the vocabulary at the supervised positions only.
            inputs = {**inputs, "return_logits": False}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


# ----------------------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------------------


def make_processor(settings: dict) -> UnivalProcessor:
    """A processor with a recipe's settings: `image_size`, `num_frames`, `video_crop_size`, `audio_max_length` and
    `prompt_types` (decoder layouts that differ from the tasks' defaults; saved with the model, so that evaluation and
    pipelines use them too)."""
    unknown = set(settings) - {"image_size", "num_frames", "video_crop_size", "audio_max_length", "prompt_types"}
    if unknown:
        raise ValueError(f"unknown processor setting(s) {sorted(unknown)}")
    image = {"size": settings["image_size"]} if "image_size" in settings else {}
    video = {k: settings[s] for k, s in (("num_frames", "num_frames"), ("crop_size", "video_crop_size")) if s in settings}
    audio = {"max_length": settings["audio_max_length"]} if "audio_max_length" in settings else {}
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(**image),
        video_processor=UnivalVideoProcessor(**video),
        feature_extractor=UnivalFeatureExtractor(**audio),
        prompt_types=settings.get("prompt_types"),
    )


def initial_model(recipe: Recipe) -> UnivalForConditionalGeneration:
    spec = recipe.model
    if spec.get("init_from"):
        return UnivalForConditionalGeneration.from_pretrained(spec["init_from"])
    torch.manual_seed(recipe.seed)
    return UnivalForConditionalGeneration(UnivalConfig.from_preset(spec.get("preset", "unival-tiny"), **spec.get("overrides", {})))


def stage_training_arguments(base: TrainingArguments, explicit: set[str], stage: StageSpec, output_dir: Path) -> TrainingArguments:
    """TrainingArguments of a stage: package defaults <- the recipe stage's values <- flags given on the command line
    (<- the settings every UnIVAL run needs)."""
    init_fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    recipe_values = {**DEFAULT_TRAINING_ARGS, **stage.training}
    unknown = set(recipe_values) - init_fields
    if unknown:
        raise ValueError(f"stage {stage.name!r}: unknown TrainingArguments field(s) {sorted(unknown)}")
    command_line = {name: getattr(base, name) for name in explicit if name in init_fields}
    values = {**recipe_values, **command_line, **REQUIRED_TRAINING_ARGS, "output_dir": str(output_dir)}
    if "use_cpu" not in command_line and launched_on_cpu_processes():
        # transformers 5 joins the process group on CPU only with `use_cpu`: without it every rank of a
        # `torchrun`/`accelerate launch` job on a CPU machine trains alone, on the same batches.
        values["use_cpu"] = True
    return TrainingArguments(**values)


def launched_on_cpu_processes() -> bool:
    """Several processes were launched (torchrun / accelerate launch) on a machine without a GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def run_stage(
    recipe: Recipe,
    stage: StageSpec,
    model: UnivalForConditionalGeneration,
    sources: dict,
    base_args: TrainingArguments,
    explicit: set[str],
    output_root: Path,
) -> tuple[UnivalForConditionalGeneration, dict]:
    output_dir = output_root / stage.name
    args = stage_training_arguments(base_args, explicit, stage, output_dir)
    for name, value in stage.model.items():
        setattr(model.config, name, value)
    processor = make_processor({**recipe.processor, **stage.processor})
    from training.collator import UnivalMultitaskCollator

    collator = TaskCountingCollator(UnivalMultitaskCollator(processor, training=True))
    train_dataset, sizes = build_stage_dataset(stage, sources, "train")
    if "weights" in stage.sampling:
        probabilities = mixture_weights(sizes, _expand_weights(stage.sampling["weights"], sizes))
    else:
        probabilities = mixture_weights(sizes, temperature=stage.sampling.get("temperature", 1.0))
    sampler = TaskBalancedSampler(sizes, probabilities, seed=args.seed)
    eval_dataset = None
    if stage.eval_split:
        eval_dataset, _ = build_stage_dataset(stage, sources, stage.eval_split, stage.eval_max_examples)

    state = PartialState()
    if state.is_main_process:
        print(f"[pretrain] stage {stage.name!r}: {len(train_dataset)} examples in {len(sizes)} task groups")
        for group, probability in probabilities.items():
            print(f"[pretrain]   {group:32s} {sizes[group]:6d} examples, sampling weight {probability:.3f}")
    trainer = UnivalTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        task_sampler=sampler,
        callbacks=[TaskMixtureCallback(collator)],
    )
    summary = {
        "stage": stage.name,
        **train_and_summarise(trainer, output_dir, args.resume_from_checkpoint),
        "sampling_weights": probabilities,
        "realised_proportions": sampler.realised_proportions(),
    }
    if eval_dataset is not None and len(eval_dataset):
        summary["eval_loss"] = trainer.evaluate()["eval_loss"]
    final = output_dir / "final"
    trainer.save_model(final)
    if state.is_main_process:
        processor.save_pretrained(final)
        (final / "stage_summary.json").write_text(json.dumps(summary, indent=2))
        print(f"[pretrain] stage {stage.name!r} done in {summary['seconds']} s: train loss {summary['train_loss']:.3f}"
              + (f", eval loss {summary['eval_loss']:.3f}" if "eval_loss" in summary else ""))
    state.wait_for_everyone()
    return trainer.model, summary


def train_and_summarise(trainer: Trainer, output_dir: Path, resume_from_checkpoint) -> dict:
    """`trainer.train()`, resuming from the last checkpoint in `output_dir` when `resume_from_checkpoint` is
    "true"/"last" (and there is one) or from the given path; returns the run's loss figures and duration."""
    resume = resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = any(output_dir.glob("checkpoint-*")) or None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    return {
        "train_loss": result.training_loss,
        "global_step": result.global_step,
        "seconds": round(time.perf_counter() - start, 1),
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }


def _expand_weights(weights: dict, sizes: dict) -> dict:
    """Recipe weights may name tasks (`caption`) or groups (`world/caption`): map them to groups."""
    expanded = {}
    for group in sizes:
        task = group.split("/", 1)[1]
        if group in weights:
            expanded[group] = weights[group]
        elif task in weights:
            expanded[group] = weights[task]
    unknown = [k for k in weights if k not in sizes and k not in {g.split("/", 1)[1] for g in sizes}]
    if unknown:
        raise ValueError(f"sampling weights name unknown task(s) {unknown}; groups: {sorted(sizes)}")
    return expanded


def explicit_flags(argv: list[str]) -> set[str]:
    """Names of the TrainingArguments flags given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    given = set()
    for token in argv:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            if name in names:
                given.add(name)
    return given


def run(argv: list[str] | None = None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--output_dir") or a.startswith("--output-dir") for a in argv):
        argv += ["--output_dir", "outputs/pretrain"]
    parser = HfArgumentParser((PretrainArguments, TrainingArguments))
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    keep_freed_memory()  # CPU runs: no page faults for the large tensors every step (training/allocator.py)
    explicit = explicit_flags(argv) - {"output_dir"}
    recipe = load_recipe(script_args.recipe)
    output_root = Path(training_args.output_dir)
    selected = script_args.stages.split(",") if script_args.stages else [s.name for s in recipe.stages]
    for name in selected:
        recipe.stage(name)  # validates the names

    sources = {name: load_source(name, spec) for name, spec in recipe.sources.items()}
    summaries, model = [], None
    for index, stage in enumerate(recipe.stages):
        final = output_root / stage.name / "final"
        if stage.name not in selected:
            continue
        if final.exists() and not script_args.overwrite_stages:
            print(f"[pretrain] stage {stage.name!r} already finished ({final}); skipping")
            model = None
            continue
        if model is None:
            if stage.init_from:
                model = UnivalForConditionalGeneration.from_pretrained(stage.init_from)
            elif index > 0:
                previous = output_root / recipe.stages[index - 1].name / "final"
                if not previous.exists():
                    raise FileNotFoundError(f"stage {stage.name!r} starts from {previous}, which does not exist: run that stage first")
                print(f"[pretrain] stage {stage.name!r} starts from {previous}")
                model = UnivalForConditionalGeneration.from_pretrained(previous)
            else:
                model = initial_model(recipe)
        model, summary = run_stage(recipe, stage, model, sources, training_args, explicit, output_root)
        summaries.append(summary)
    return summaries


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run()


if __name__ == "__main__":
    main()
