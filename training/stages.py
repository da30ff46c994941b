"""Running a recipe (`training.recipe`): its curriculum stages, one `Trainer` run each, on `transformers.Trainer`.

    from training.recipe import load_recipe
    from training.stages import run_recipe

    summaries = run_recipe(load_recipe("synthetic_tiny"), {"output_dir": "outputs/pretrain", "max_steps": 50})

Each stage starts from the previous stage's weights (or the recipe's model, or its own `init_from`), has its own
datasets, task mixture, processor settings and schedule, and is written to `OUTPUT_DIR/STAGE/final`: model,
processor, `stage_summary.json`, and a `generation_config.json` with the inference settings of the stage's
`generation_task` (`processing.tasks.generation_config`). A finished stage is skipped unless `overwrite`.

A stage's `TrainingArguments` are layered: the package defaults (`DEFAULT_TRAINING_ARGS`) <- the stage's `training`
<- the `TrainingArguments` values of the command line (the same for every stage; each stage prints the ones that
change its recipe values) <- the settings every UnIVAL run needs (`REQUIRED_TRAINING_ARGS`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import GenerationConfig, Trainer, TrainingArguments

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from processing import UnivalProcessor
from processing.tasks import generation_config
from training.recipe import PROCESSOR_SETTINGS, PROCESSOR_SIZES, STAGE_MODEL_FIELDS, Recipe, StageSpec, check_keys
from training.sampling import TaskBalancedSampler, mixture_weights
from training.sources import build_stage_dataset, load_source
from training.trainer import CHECKPOINT_COMPLETE_FILE, TaskCountingCollator, TaskMixtureCallback, UnivalTrainer


logger = logging.getLogger(__name__)


# TrainingArguments every UnIVAL run needs, whatever the recipe says.
REQUIRED_TRAINING_ARGS = {
    "remove_unused_columns": False,  # multimodal examples: the collator, not Trainer, picks the columns
    "label_names": ["labels"],
}
DEFAULT_TRAINING_ARGS = {
    "report_to": "none",
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
_GENERATION_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


def set_processor_sizes(processor: UnivalProcessor, sizes: dict) -> UnivalProcessor:
    """Sets `PROCESSOR_SIZES` settings on a processor (its tokenizer and other settings kept); returns it."""
    for name, value in sizes.items():
        component, attribute = PROCESSOR_SIZES[name]
        value = int(value)
        setattr(getattr(processor, component), attribute,
                {"height": value, "width": value} if attribute in ("size", "crop_size") else value)
    return processor


def make_processor(settings: dict) -> UnivalProcessor:
    """A processor with a recipe's settings: the sizes of `PROCESSOR_SIZES` and `prompt_types` (decoder layouts
    that differ from the tasks' defaults; saved with the model, so that evaluation and pipelines use them too)."""
    check_keys("processor", settings, PROCESSOR_SETTINGS, kind="processor setting")
    processor = UnivalProcessor(prompt_types=settings.get("prompt_types"))
    return set_processor_sizes(processor, {name: value for name, value in settings.items() if name in PROCESSOR_SIZES})


def initial_model(recipe: Recipe) -> UnivalForConditionalGeneration:
    """The recipe's `model:`: loaded (`init_from`) or built from a preset, then its pretrained parts (`init`)."""
    spec = recipe.model
    if spec.get("init_from"):
        model = UnivalForConditionalGeneration.from_pretrained(spec["init_from"])
    else:
        torch.manual_seed(recipe.seed)
        model = UnivalForConditionalGeneration(
            UnivalConfig.from_preset(spec.get("preset", "unival-tiny"), **spec.get("overrides", {}))
        )
    if spec.get("init"):
        load_parts(model, spec["init"], recipe.seed, "the recipe's model")
    return model


def load_parts(model: UnivalForConditionalGeneration, init: dict, seed: int, what: str):
    """`init_from_parts` with a recipe's `init:` section; prints what was loaded (main process)."""
    from modeling_unival.conversion import init_from_parts

    report = init_from_parts(model, seed=seed, **init)
    if PartialState().is_main_process:
        print(f"[pretrain] {what}: pretrained parts\n" + report.summary())
    return report


def prepare_stage_model(stage: StageSpec, model: UnivalForConditionalGeneration, seed: int):
    """The model a stage trains: `model` with the stage's `towers` added and its `init` parts loaded (both
    optional; a tower that the model already has with the same configuration is kept, as when a run restarts a
    stage from its own saved model)."""
    from modeling_unival.conversion import add_towers, tower_config

    towers = {}
    for part, spec in (stage.model.get("towers") or {}).items():
        existing = getattr(model.config, f"{part}_config")
        if existing is None:
            towers[part] = spec
        elif existing.to_dict() != tower_config(part, spec).to_dict():
            raise ValueError(f"stage {stage.name!r}: the model already has a different {part} tower than `towers` asks")
    if towers:
        model = add_towers(model, seed=seed, **towers)
        if PartialState().is_main_process:
            print(f"[pretrain] stage {stage.name!r} adds the {' and '.join(towers)} tower(s)")
    if stage.model.get("init"):
        load_parts(model, stage.model["init"], seed, f"stage {stage.name!r}")
    return model


def task_generation_config(model, task: str) -> GenerationConfig:
    """The original's inference settings of `task`, with the model's special token ids: what its saved
    generation_config.json holds, so a plain `generate()` of the reloaded model decodes as the original did."""
    return generation_config(task, **{name: getattr(model.config, name) for name in _GENERATION_TOKEN_IDS})


def launched_on_cpu_processes() -> bool:
    """Several processes were launched (torchrun / accelerate launch) on a machine without a GPU."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def uses_cpu(command_line: dict) -> bool:
    """Whether the run's `TrainingArguments` have `use_cpu`: as given, or on a multi-process CPU launch."""
    # transformers 5 joins the process group on CPU only with `use_cpu`: without it every rank of a
    # `torchrun`/`accelerate launch` job on a CPU machine trains alone, on the same batches.
    return bool(command_line.get("use_cpu", launched_on_cpu_processes()))


def distributed_state(command_line: dict) -> PartialState:
    """The process's accelerate state, set up as the run's `TrainingArguments` will set it up. Whatever runs before
    them (a source generated under `main_process_first`) needs it: a state set up without `use_cpu` on a CPU launch
    has no barrier."""
    return PartialState(cpu=uses_cpu(command_line))


def stage_training_arguments(command_line: dict, stage: StageSpec, output_dir: Path) -> TrainingArguments:
    """TrainingArguments of a stage: package defaults <- the recipe stage's values <- `TrainingArguments` values
    given on the command line (<- the settings every UnIVAL run needs)."""
    init_fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    # Progress bars only on a terminal: in a log file they are lines of escape codes; Trainer then logs plain lines.
    recipe_values = {**DEFAULT_TRAINING_ARGS, "disable_tqdm": not sys.stderr.isatty(), **stage.training}
    check_keys(f"stage {stage.name!r}", {**recipe_values, **command_line}, init_fields, kind="TrainingArguments field")
    values = {**recipe_values, **command_line, **REQUIRED_TRAINING_ARGS, "output_dir": str(output_dir)}
    if uses_cpu(command_line):
        values["use_cpu"] = True
    return TrainingArguments(**values)


def command_line_changes(command_line: dict, stage: StageSpec) -> dict[str, tuple]:
    """{field: (command-line value, value replaced)} of the command line's values that differ from what the stage
    would have without them: its recipe's value, else the package default (`None`: transformers' default)."""
    recipe_values = {**DEFAULT_TRAINING_ARGS, **stage.training}
    return {name: (value, recipe_values.get(name)) for name, value in command_line.items()
            if name != "output_dir" and recipe_values.get(name) != value}


def save_final(trainer: Trainer, processor, directory: Path, generation: GenerationConfig, summary: dict,
               summary_name: str) -> None:
    """Writes a run's result for inference: the model (or a LoRA adapter), its processor, its task's
    generation_config.json (also next to an adapter, which `save_model` writes without one) and the run's summary."""
    trainer.save_model(directory)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(directory)
        generation.save_pretrained(directory)
        (directory / summary_name).write_text(json.dumps(summary, indent=2, default=str))


# A checkpoint's weights, in any of the layouts `save_model` writes (sharded: the index is written after the shards).
CHECKPOINT_WEIGHTS = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    "adapter_model.safetensors", "adapter_model.bin",
)
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(
    directory: Path, required: tuple[str, ...] = (), require_marker: bool = True
) -> str | None:
    """Why the `Trainer` checkpoint `directory` is incomplete (a run killed while writing it), or `None` when it is
    complete.

    The checkpoints of this package's trainers end with `CHECKPOINT_COMPLETE_FILE` (`training.trainer
    .CheckpointCompletion`), written after every other file and listing their sizes: it is the test. Without it, a
    checkpoint is incomplete when `require_marker`; otherwise (one written by a plain `Trainer`, or given by path)
    the best a folder can show is checked: a readable `trainer_state.json`, the weights and the `required` files
    (e.g. the EMA's).
    """
    marker = directory / CHECKPOINT_COMPLETE_FILE
    if marker.is_file():
        try:
            files = json.loads(marker.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"{CHECKPOINT_COMPLETE_FILE} is unreadable"
        for name, size in files.items():
            path = directory / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size} bytes, {size} when the checkpoint was written"
        return None
    if require_marker:
        return f"no {CHECKPOINT_COMPLETE_FILE}, the file written last"
    state = directory / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return "trainer_state.json is truncated or unreadable"
    if not any((directory / name).is_file() for name in CHECKPOINT_WEIGHTS):
        return f"no model weights (none of {', '.join(CHECKPOINT_WEIGHTS)})"
    missing = [name for name in required if not (directory / name).is_file()]
    return f"no {', '.join(missing)}" if missing else None


def last_complete_checkpoint(output_dir: Path, required: tuple[str, ...] = ()) -> Path | None:
    """The newest (highest step) complete `checkpoint-N` of `output_dir` (`checkpoint_problem`), `None` if there is
    none. Newer incomplete ones are skipped with a warning naming what they lack: resuming from one would fail. The
    completion marker is required when any checkpoint of the folder has one (a run of this package's trainers)."""
    if not output_dir.is_dir():
        return None
    candidates = sorted(
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := _CHECKPOINT_DIR.match(path.name))
    )
    require_marker = any((path / CHECKPOINT_COMPLETE_FILE).is_file() for _, path in candidates)
    for _, path in reversed(candidates):
        problem = checkpoint_problem(path, required, require_marker)
        if problem is None:
            return path
        logger.warning("skipping the incomplete checkpoint %s (%s): the run was stopped while writing it", path, problem)
    return None


def _required_checkpoint_files(trainer: Trainer) -> tuple[str, ...]:
    """The files every checkpoint of this `trainer` holds besides the weights and trainer_state.json."""
    from training.ema import EMA_FILE, WeightEMA

    if trainer.args.save_only_model:
        required = ()
    elif trainer.is_fsdp_enabled:  # accelerate's FSDP checkpoint: the gathered model and optimizer
        required = ("pytorch_model_fsdp.bin", "optimizer.bin", "scheduler.pt")
    else:
        required = ("optimizer.pt", "scheduler.pt")
    if any(isinstance(callback, WeightEMA) for callback in trainer.callback_handler.callbacks):
        required += (EMA_FILE,)
    return required


def train_and_summarise(trainer: Trainer, output_dir: Path, resume_from_checkpoint) -> dict:
    """`trainer.train()`, resuming from the last complete checkpoint in `output_dir` when `resume_from_checkpoint`
    is "true"/"last" (and there is one; incomplete ones, from a run killed while saving, are skipped) or from the
    given path; returns the run's loss figures and duration."""
    resume = resume_from_checkpoint
    required = _required_checkpoint_files(trainer)
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = last_complete_checkpoint(output_dir, required)
        resume = str(resume) if resume is not None else None
    elif isinstance(resume, (str, Path)) and Path(resume).is_dir():
        problem = checkpoint_problem(Path(resume), required, require_marker=False)
        if problem is not None:
            raise ValueError(f"--resume_from_checkpoint {resume}: incomplete checkpoint ({problem})")
    if resume and trainer.accelerator.is_main_process:
        print(f"[pretrain] resuming from {resume}")
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    return {
        "train_loss": result.training_loss,
        "global_step": result.global_step,
        "seconds": round(time.perf_counter() - start, 1),
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        # How the run was distributed: what a user comparing runs (or a test) needs to know it really was FSDP.
        "distributed": {"type": str(trainer.accelerator.distributed_type).split(".")[-1],
                        "processes": trainer.accelerator.num_processes,
                        "wrapped_model": type(trainer.model_wrapped).__name__},
    }


# ----------------------------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------------------------


def stage_mixture(stage: StageSpec, sizes: dict[str, int]) -> dict[str, float]:
    """The sampling probability of each of the stage's `source/task` groups: the recipe's weights (which may name
    tasks or groups), or the sizes tempered by `temperature`."""
    if "weights" in stage.sampling:
        return mixture_weights(sizes, _expand_weights(stage.sampling["weights"], sizes))
    return mixture_weights(sizes, temperature=stage.sampling.get("temperature", 1.0))


def _expand_weights(weights: dict, sizes: dict) -> dict:
    """Recipe weights may name tasks (`caption`) or groups (`world/caption`): map them to groups."""
    tasks = {group.split("/", 1)[1] for group in sizes}
    unknown = [key for key in weights if key not in sizes and key not in tasks]
    if unknown:
        raise ValueError(f"sampling weights name unknown task(s) {unknown}; groups: {sorted(sizes)}")
    expanded = {}
    for group in sizes:
        task = group.split("/", 1)[1]
        if group in weights or task in weights:
            expanded[group] = weights[group] if group in weights else weights[task]
    return expanded


def _print_stage_plan(stage: StageSpec, train_dataset, sizes: dict, probabilities: dict, command_line: dict) -> None:
    print(f"[pretrain] stage {stage.name!r}: {len(train_dataset)} examples in {len(sizes)} task groups")
    for group, probability in probabilities.items():
        print(f"[pretrain]   {group:32s} {sizes[group]:6d} examples, sampling weight {probability:.3f}")
    for name, (value, replaced) in command_line_changes(command_line, stage).items():
        origin = ("the recipe's" if name in stage.training else "the package default" if name in DEFAULT_TRAINING_ARGS
                  else "transformers' default")
        print(f"[pretrain]   {name} = {value!r} from the command line (every stage), instead of {origin}"
              + (f" {replaced!r}" if replaced is not None else ""))


def run_stage(recipe: Recipe, stage: StageSpec, model: UnivalForConditionalGeneration, sources: dict,
              command_line: dict, output_root: Path) -> tuple[UnivalForConditionalGeneration, dict]:
    """Trains `model` on one stage and saves it to `output_root/STAGE/final`; returns the trained model and the
    stage's summary (losses, sampling weights and the proportions realised)."""
    from training.collator import UnivalMultitaskCollator

    output_dir = output_root / stage.name
    args = stage_training_arguments(command_line, stage, output_dir)
    for name, value in stage.model.items():
        if name in STAGE_MODEL_FIELDS:
            setattr(model.config, name, value)
    model.generation_config = task_generation_config(model, stage.generation_task)
    processor = make_processor({**recipe.processor, **stage.processor})
    collator = TaskCountingCollator(UnivalMultitaskCollator(processor, training=True))
    train_dataset, sizes = build_stage_dataset(stage, sources, "train")
    probabilities = stage_mixture(stage, sizes)
    sampler = TaskBalancedSampler(sizes, probabilities, seed=args.seed)
    eval_dataset = None
    if stage.eval_split:
        # A validation loss over the tasks the split has: a small world's split may miss a rare task.
        eval_dataset, _ = build_stage_dataset(stage, sources, stage.eval_split, stage.eval_max_examples,
                                              skip_missing_tasks=True)
    trainer = UnivalTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                            data_collator=collator, processing_class=processor, task_sampler=sampler,
                            callbacks=[TaskMixtureCallback(collator)])
    if trainer.accelerator.is_main_process:
        _print_stage_plan(stage, train_dataset, sizes, probabilities, command_line)
    summary = {
        "stage": stage.name,
        **train_and_summarise(trainer, output_dir, args.resume_from_checkpoint),
        "sampling_weights": probabilities,
        "realised_proportions": sampler.realised_proportions(),
        "command_line": {name: value for name, (value, _) in command_line_changes(command_line, stage).items()},
        "generation_task": stage.generation_task,
    }
    if eval_dataset is not None and len(eval_dataset):
        summary["eval_loss"] = trainer.evaluate()["eval_loss"]
    save_final(trainer, processor, output_dir / "final", model.generation_config, summary, "stage_summary.json")
    if trainer.accelerator.is_main_process:
        print(f"[pretrain] stage {stage.name!r} done in {summary['seconds']} s: train loss {summary['train_loss']:.3f}"
              + (f", eval loss {summary['eval_loss']:.3f}" if "eval_loss" in summary else ""))
    trainer.accelerator.wait_for_everyone()
    return trainer.model, summary


def _stage_start(recipe: Recipe, index: int, output_root: Path) -> UnivalForConditionalGeneration:
    """The weights stage `index` starts from when the run does not hand them on in memory: the stage's own
    `init_from`, the previous stage's saved final model, or the recipe's model for the first stage."""
    stage = recipe.stages[index]
    if stage.init_from:
        return UnivalForConditionalGeneration.from_pretrained(stage.init_from)
    if index == 0:
        return initial_model(recipe)
    previous = output_root / recipe.stages[index - 1].name / "final"
    if not previous.exists():
        raise FileNotFoundError(f"stage {stage.name!r} starts from {previous}, which does not exist: run that stage first")
    print(f"[pretrain] stage {stage.name!r} starts from {previous}")
    return UnivalForConditionalGeneration.from_pretrained(previous)


def run_recipe(recipe: Recipe, command_line: dict, stages: list[str] | None = None,
               overwrite: bool = False) -> list[dict]:
    """Runs the recipe's stages (those named in `stages`, default all) in order, into `command_line["output_dir"]`
    (default `outputs/pretrain`); `command_line` holds `TrainingArguments` values applied to every stage. A stage
    whose final model exists is skipped unless `overwrite`. Returns the summaries of the stages run."""
    command_line = dict(command_line)
    output_root = Path(command_line.pop("output_dir", "outputs/pretrain"))
    selected = stages or [stage.name for stage in recipe.stages]
    for name in selected:
        recipe.stage(name)  # validates the names
    distributed_state(command_line)
    sources = {name: load_source(name, spec) for name, spec in recipe.sources.items()}
    summaries, model = [], None
    for index, stage in enumerate(recipe.stages):
        final = output_root / stage.name / "final"
        if stage.name not in selected:
            continue
        if final.exists() and not overwrite:
            print(f"[pretrain] stage {stage.name!r} already finished ({final}); skipping")
            model = None
            continue
        model = prepare_stage_model(stage, model or _stage_start(recipe, index, output_root), recipe.seed)
        model, summary = run_stage(recipe, stage, model, sources, command_line, output_root)
        summaries.append(summary)
    return summaries


__all__ = [
    "DEFAULT_TRAINING_ARGS",
    "REQUIRED_TRAINING_ARGS",
    "command_line_changes",
    "distributed_state",
    "initial_model",
    "make_processor",
    "set_processor_sizes",
    "run_recipe",
    "run_stage",
    "save_final",
    "stage_training_arguments",
    "task_generation_config",
    "train_and_summarise",
]
