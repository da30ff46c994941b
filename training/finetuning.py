"""Single-task finetuning of a (pretrained) UnIVAL on `transformers.Trainer`, with the original's per-task settings,
generation metrics during evaluation, and parameter-efficient variants (LoRA, chosen modules only). The command line
is `training/finetune.py`; `finetune(FinetuneArguments(...), {"output_dir": ..., "max_steps": ...})` runs the same.

Settings are layered: the package's training defaults (`training.stages.DEFAULT_TRAINING_ARGS`) <- finetuning's
common settings (`FINETUNE_TRAINING_ARGS`, clip norm 1.0, evaluation and saving every epoch) <- the task's row of
`TASK_DEFAULTS` (the original UnIVAL finetuning scripts, reference section 7.3) <- the `TrainingArguments` values
given (the command line's). Label smoothing goes to `model.config.label_smoothing` (the model's loss; a
`label_smoothing_factor` value sets it too, and Trainer's own smoother is disabled). The processor's sizes are the
task's (`image_size` / `num_frames` / `video_crop_size` / `audio_max_length`) unless given, or kept as saved
(`keep_processor_sizes`).

Evaluation (`FinetuneTrainer.evaluate`) adds the task's generation metrics (`training.evaluation`) on at most
`eval_max_examples` validation examples to the metrics, e.g. `eval_cider`, `eval_bleu4`, `eval_vqa_score`,
`eval_accuracy@0.5`, `eval_accuracy`, plus `eval_score` (the task's main metric), so `metric_for_best_model cider`
(default per task) and `load_best_model_at_end` work.

The criterion is the task's: the original's "encouraging loss" for captions and video QA (`training.losses`),
the model's label-smoothed cross-entropy otherwise; evaluation losses are always the model's own.

`ema_decay D` keeps an exponential moving average of the trained weights (`training.ema.WeightEMA`; the original's
VQA and video-QA finetunes used 0.9999 over tens of thousands of updates, so it is off by default here: short runs
would end near their starting weights); the final evaluation, the saved model and a LoRA merge then use the
averaged weights, and checkpoints carry the average for resuming.

Output: `OUTPUT_DIR/final` (model, or LoRA adapter, + processor + the task's `generation_config.json` +
`finetune_summary.json`), and with `merge_lora` `OUTPUT_DIR/final_merged` (a full model + processor + generation
config).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments
from transformers.utils import logging

from modeling_unival import UnivalForConditionalGeneration
from processing import UnivalProcessor
from processing.ids import MODALITY_NAMES
from processing.tasks import resolve_task
from training.cli import looks_like_path
from training.ema import WeightEMA
from training.recipe import DatasetSelection, StageSpec
from training.sources import build_stage_dataset, load_source
from training.stages import (
    PROCESSOR_SIZES, distributed_state, save_final, set_processor_sizes, stage_training_arguments,
    task_generation_config, train_and_summarise,
)
from training.trainer import FinetuneTrainer, TaskCountingCollator, TaskMixtureCallback


logger = logging.get_logger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Defaults (reference section 7.3: `run_scripts/*/unival_*.sh`)
# ----------------------------------------------------------------------------------------------------------------

#: Settings of every finetune (on top of `training.stages.DEFAULT_TRAINING_ARGS`).
FINETUNE_TRAINING_ARGS = {
    "max_grad_norm": 1.0,  # finetuning clip norm of the original
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 50,
}

#: One row per task the original finetuned (tasks of `processing.tasks`): its finetuning settings. `training`:
#: TrainingArguments values (`warmup_steps` < 1 is a ratio; batch = per-GPU batch x update_freq of the original);
#: `label_smoothing` -> model.config; `freeze_embeddings`: the tied token embedding matrix is not trained
#: (--freeze-encoder/decoder-embedding); `processor`: sizes for `make_processor`-style settings; `metric`: the
#: default `metric_for_best_model`; `loss`: "encouraging" (label-smoothed CE + encouraging bonus, worst tokens
#: dropped late; `training.losses`) or "label_smoothed" (the model's own loss).
TASK_DEFAULTS: dict[str, dict] = {
    "caption": {  # COCO, caption/unival_caption_stage_1.sh
        "training": {"learning_rate": 1e-5, "num_train_epochs": 10, "warmup_steps": 0.06,
                     "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1},
        "label_smoothing": 0.1, "freeze_embeddings": True, "processor": {"image_size": 480},
        "loss": "encouraging", "metric": "cider",
    },
    "vqa": {  # VQAv2, vqa/unival_vqa.sh (prev_output layout)
        "training": {"learning_rate": 1e-4, "num_train_epochs": 20, "warmup_steps": 0.04,
                     "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1},
        "label_smoothing": 0.1, "freeze_embeddings": True, "processor": {"image_size": 480},
        "loss": "label_smoothed", "metric": "score",
    },
    "visual_grounding": {  # RefCOCO/+/g, refcoco/unival_refcoco*.sh
        "training": {"learning_rate": 5e-5, "num_train_epochs": 10, "warmup_steps": 0.06,
                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4},
        "label_smoothing": 0.1, "freeze_embeddings": False, "processor": {"image_size": 512},
        "loss": "label_smoothed", "metric": "accuracy@0.5",
    },
    "visual_entailment": {  # SNLI-VE, snli_ve/unival_snli_ve.sh (prev_output, no premise)
        "training": {"learning_rate": 5e-5, "num_train_epochs": 10, "warmup_steps": 0.06,
                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4},
        "label_smoothing": 0.0, "freeze_embeddings": False, "processor": {"image_size": 480},
        "loss": "label_smoothed", "metric": "accuracy",
    },
    "video_caption": {  # MSR-VTT, caption/video/unival_video_caption_stage_1.sh
        "training": {"learning_rate": 1e-5, "num_train_epochs": 20, "warmup_steps": 0.06,
                     "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2},
        "label_smoothing": 0.1, "freeze_embeddings": True, "processor": {"num_frames": 16, "video_crop_size": 384},
        "loss": "encouraging", "metric": "cider",
    },
    "video_qa": {  # MSR-VTT-QA, vqa/video/unival_video_vqa.sh (prev_output)
        "training": {"learning_rate": 1e-4, "num_train_epochs": 35, "warmup_steps": 0.04,
                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2},
        "label_smoothing": 0.1, "freeze_embeddings": True, "processor": {"num_frames": 8, "video_crop_size": 384},
        "loss": "encouraging", "metric": "score",
    },
    "audio_caption": {  # AudioCaps, caption/audio/unival_audio_caption.sh
        "training": {"learning_rate": 1e-4, "num_train_epochs": 25, "warmup_steps": 0.06,
                     "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2},
        "label_smoothing": 0.1, "freeze_embeddings": True, "processor": {"audio_max_length": 480000},
        "loss": "encouraging", "metric": "cider",
    },
}
#: LoRA targets: leaf names of the transformer layers' linear maps (the modality towers are never targeted).
DEFAULT_LORA_TARGETS = "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
TOWER_PATTERN = re.compile(r"(^|\.)(image|video|audio)_tower\.")
TRANSFORMER_LAYER_PATTERN = re.compile(r"(^|\.)model\.(encoder|decoder)\.layers\.\d+\.")


@dataclass
class FinetuneArguments:
    task: str = field(default="caption", metadata={"help": f"task (or an alias of it): {', '.join(TASK_DEFAULTS)}"})
    model: str | None = field(default=None, metadata={"help": "a saved UnIVAL directory (model + processor)"})
    # data: one of three sources
    world: str | None = field(default=None, metadata={"help": "a synthetic world directory (training.data.synthetic)"})
    train_tsv: str | None = field(default=None, metadata={"help": "training TSV file(s), comma-separated"})
    eval_tsv: str | None = field(default=None, metadata={"help": "validation TSV file(s), comma-separated"})
    tsv_kind: str | None = field(default=None, metadata={"help": "TSV kind (default: the task's, e.g. refcoco)"})
    media_root: str | None = field(default=None, metadata={"help": "directory of the media paths in the TSVs"})
    hf_dataset: str | None = field(default=None, metadata={"help": "a `datasets` directory (save_to_disk) or hub name"})
    columns: str | None = field(default=None, metadata={"help": "JSON {schema field: column} for --hf_dataset"})
    train_split: str = field(default="train")
    eval_split: str = field(default="validation")
    max_train_examples: int | None = field(default=None)
    # task settings
    label_smoothing: float | None = field(default=None, metadata={"help": "default: the task's"})
    freeze_embeddings: bool | None = field(default=None, metadata={"help": "default: the task's"})
    image_size: int | None = field(default=None)
    num_frames: int | None = field(default=None)
    video_crop_size: int | None = field(default=None)
    audio_max_length: int | None = field(default=None)
    keep_processor_sizes: bool = field(default=False, metadata={"help": "keep the saved processor's sizes"})
    # evaluation
    eval_max_examples: int | None = field(default=200, metadata={"help": "validation examples evaluated (loss and generation)"})
    eval_num_beams: int | None = field(default=None, metadata={"help": "override the task's beam size in evaluation"})
    generation_eval: bool = field(default=True, metadata={"help": "add generation metrics to every evaluation"})
    # parameter-efficient finetuning
    lora: bool = field(default=False)
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.05)
    lora_targets: str = field(default=DEFAULT_LORA_TARGETS, metadata={"help": "comma-separated leaf module names"})
    merge_lora: bool = field(default=False, metadata={"help": "also write OUTPUT_DIR/final_merged (merged full model)"})
    # criterion
    loss: str | None = field(default=None, metadata={"help": "'encouraging' or 'label_smoothed' (default: the task's)"})
    encouraging_log_end: float = field(default=0.75, metadata={"help": "where the encouraging bonus turns linear"})
    drop_worst_ratio: float = field(default=0.05, metadata={"help": "encouraging loss: fraction of worst tokens dropped"})
    drop_worst_after: int = field(default=6000, metadata={"help": "encouraging loss: drop the worst tokens after this step"})
    # weight averaging
    ema_decay: float | None = field(
        default=None, metadata={"help": "keep an EMA of the weights (the original VQA / video QA finetunes: 0.9999); "
                                        "the final evaluation and the saved model use the averaged weights"})
    ema_start_step: int = field(default=0, metadata={"help": "first optimizer step that updates the EMA"})
    train_modules: str | None = field(
        default=None, metadata={"help": "'linear' (only nn.Linear of the transformer layers), 'freeze_towers', or a "
                                        "regex over parameter names (matching parameters train)"})

    def __post_init__(self):
        try:
            task = resolve_task(self.task).name
        except ValueError:
            task = None
        if task not in TASK_DEFAULTS:
            raise ValueError(f"--task must be one of {sorted(TASK_DEFAULTS)} (or an alias), got {self.task!r}")
        self.task = task
        if not self.model:
            raise ValueError("--model (a saved UnIVAL directory) is required")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"LoRA settings out of range: --lora_r {self.lora_r} (>= 1), --lora_alpha "
                             f"{self.lora_alpha} (> 0), --lora_dropout {self.lora_dropout} (in [0, 1))")


# ----------------------------------------------------------------------------------------------------------------
# Data and settings
# ----------------------------------------------------------------------------------------------------------------


def tsv_kind(task: str) -> str:
    """The `training.data.readers.TSV_KINDS` kind of a task's original files: the kind named as the task or one of
    its aliases (`refcoco` for visual_grounding, `snli_ve` for visual_entailment)."""
    from training.data.readers import TSV_KINDS

    for kind in TSV_KINDS:
        try:
            if resolve_task(kind).name == task:
                return kind
        except ValueError:  # a kind of several tasks (`pretrain`)
            continue
    raise ValueError(f"no TSV kind reads {task!r} files; give --tsv_kind (one of {sorted(TSV_KINDS)})")


def source_spec(args: FinetuneArguments) -> dict:
    """The `training.sources.load_source` spec of the data arguments."""
    given = [bool(args.world), bool(args.train_tsv), bool(args.hf_dataset)]
    if sum(given) != 1:
        raise ValueError("give exactly one data source: --world, --train_tsv (+ --eval_tsv) or --hf_dataset")
    if args.world:
        return {"type": "synthetic", "path": args.world}
    if args.train_tsv:
        files = {args.train_split: args.train_tsv.split(",")}
        if args.eval_tsv:
            files[args.eval_split] = args.eval_tsv.split(",")
        return {"type": "tsv", "kind": args.tsv_kind or tsv_kind(args.task), "files": files,
                "media_root": args.media_root}
    try:
        columns = json.loads(args.columns) if args.columns else {}
    except ValueError as error:
        raise ValueError(f"--columns must be a JSON object {{schema field: column}}, got {args.columns!r}: {error}") from None
    if not isinstance(columns, dict):
        raise ValueError(f"--columns must be a JSON object {{schema field: column}}, got {args.columns!r}")
    return {"type": "hf", "path": args.hf_dataset, "task": args.task, "split": args.train_split, "columns": columns}


def check_data_files(args: FinetuneArguments) -> None:
    """The TSV files of the command line exist (named by their flag, before anything is loaded)."""
    for flag, paths in (("--train_tsv", args.train_tsv), ("--eval_tsv", args.eval_tsv)):
        for path in paths.split(",") if paths else []:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{flag}: {path} is not a file")


def check_splits(args: FinetuneArguments, source) -> None:
    """The training split must exist; an evaluation split given explicitly too (only the default `validation`
    may be absent: the finetune then runs without evaluation, as a TSV source without --eval_tsv does)."""
    default_eval = FinetuneArguments.__dataclass_fields__["eval_split"].default
    for flag, split in (("--train_split", args.train_split), ("--eval_split", args.eval_split)):
        if split not in source and (flag == "--train_split" or split != default_eval):
            raise ValueError(f"{flag}: the data has no split {split!r}; its splits: {sorted(source)}")
    if args.eval_split not in source:
        logger.info("the data has no %r split: finetuning without evaluation", args.eval_split)


def task_stage(args: FinetuneArguments, has_eval: bool) -> StageSpec:
    """The finetune as a one-stage `StageSpec` (reuses the pretraining dataset and TrainingArguments builders)."""
    defaults = TASK_DEFAULTS[args.task]
    training = {**FINETUNE_TRAINING_ARGS, **defaults["training"], "metric_for_best_model": defaults["metric"]}
    if not has_eval:
        training["eval_strategy"] = "no"
    modality = MODALITY_NAMES[resolve_task(args.task).default_modality]
    selection = DatasetSelection(source="data", tasks=[args.task], modalities=[modality], split=args.train_split,
                                 max_examples=args.max_train_examples)
    return StageSpec(name="finetune", datasets=[selection], training=training, generation_task=args.task,
                     eval_split=args.eval_split if has_eval else None, eval_max_examples=args.eval_max_examples)


def task_training_arguments(args: FinetuneArguments, command_line: dict, has_eval: bool):
    """(TrainingArguments, label smoothing): defaults <- task row <- `command_line` (TrainingArguments values)."""
    stage = task_stage(args, has_eval)
    training_args = stage_training_arguments(command_line, stage, Path(command_line["output_dir"]))
    label_smoothing = TASK_DEFAULTS[args.task]["label_smoothing"]
    if "label_smoothing_factor" in command_line:
        label_smoothing = training_args.label_smoothing_factor
    if args.label_smoothing is not None:
        label_smoothing = args.label_smoothing
    if training_args.label_smoothing_factor:
        # The model computes the (weighted, smoothed) loss itself; Trainer's LabelSmoother would smooth twice.
        training_args = dataclasses.replace(training_args, label_smoothing_factor=0.0)
    return training_args, float(label_smoothing)


def processor_sizes(args: FinetuneArguments) -> dict:
    sizes = {} if args.keep_processor_sizes else dict(TASK_DEFAULTS[args.task]["processor"])
    for name in PROCESSOR_SIZES:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    return sizes


def encouraging_settings(args: FinetuneArguments) -> dict | None:
    """The encouraging-loss settings of the run, or None when it trains with the model's own loss."""
    loss = args.loss or TASK_DEFAULTS[args.task]["loss"]
    if loss not in ("encouraging", "label_smoothed"):
        raise ValueError(f"--loss must be 'encouraging' or 'label_smoothed', got {loss!r}")
    if loss == "label_smoothed":
        return None
    return {"log_end": args.encouraging_log_end, "drop_worst_ratio": args.drop_worst_ratio,
            "drop_worst_after": args.drop_worst_after}


# ----------------------------------------------------------------------------------------------------------------
# Trainable parameters
# ----------------------------------------------------------------------------------------------------------------


def select_trainable(model, train_modules: str | None, freeze_embeddings: bool) -> None:
    """Sets `requires_grad`: every parameter, or those of `train_modules` ('linear', 'freeze_towers', a regex); the
    token embedding matrix (tied with the LM head) is frozen with `freeze_embeddings`."""
    if train_modules in (None, "", "all"):
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    elif train_modules == "linear":
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and TRANSFORMER_LAYER_PATTERN.search(name + "."):
                for parameter in module.parameters():
                    parameter.requires_grad_(True)
    elif train_modules == "freeze_towers":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not TOWER_PATTERN.search(name))
    else:
        pattern = re.compile(train_modules)
        matched = 0
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(bool(pattern.search(name)))
            matched += bool(pattern.search(name))
        if not matched:
            raise ValueError(f"--train_modules {train_modules!r} matches no parameter")
    if freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)


def _keep_in_eval_mode(module, inputs):
    module.train(False)


def freeze_batchnorm_statistics(model) -> int:
    """BatchNorm layers whose parameters are all frozen also keep their running statistics (they run in eval mode
    in training). Otherwise training would change buffers of frozen towers, which a LoRA adapter does not save.
    Returns the number of such layers."""
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in module.parameters(recurse=False)):
                module.register_forward_pre_hook(_keep_in_eval_mode)
                count += 1
    return count


def lora_config(args: FinetuneArguments):
    from peft import LoraConfig

    leaves = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    # A regex (full match) restricted to the transformer layers, so no tower module with the same leaf name matches.
    target = r"model\.(encoder|decoder)\.layers\.\d+\..*\.(" + "|".join(map(re.escape, leaves)) + r")"
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=target,
                      bias="none")


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


def prepare_model(args: FinetuneArguments, label_smoothing: float):
    """The model to finetune: loaded from `args.model`, with the task's label smoothing and generation settings,
    wrapped for LoRA or with only the chosen parameters trainable. Returns (model, freeze_embeddings)."""
    model = UnivalForConditionalGeneration.from_pretrained(args.model)
    model.config.label_smoothing = label_smoothing
    model.generation_config = task_generation_config(model, args.task)
    freeze_embeddings = TASK_DEFAULTS[args.task]["freeze_embeddings"] if args.freeze_embeddings is None else args.freeze_embeddings
    if args.lora:
        from peft import get_peft_model

        if args.train_modules:
            raise ValueError("--lora trains only the LoRA parameters: do not combine it with --train_modules")
        model = get_peft_model(model, lora_config(args))
    else:
        select_trainable(model, args.train_modules, freeze_embeddings)
    freeze_batchnorm_statistics(model)
    return model, freeze_embeddings


# ----------------------------------------------------------------------------------------------------------------
# Run
# ----------------------------------------------------------------------------------------------------------------


def task_datasets(args: FinetuneArguments, source) -> tuple:
    """(training set, validation set or None) of the task in a loaded source."""
    has_eval = args.eval_split in source
    stage = task_stage(args, has_eval)
    train_dataset, _ = build_stage_dataset(stage, {"data": source}, "train")
    eval_dataset = None
    if has_eval:
        eval_dataset, _ = build_stage_dataset(stage, {"data": source}, args.eval_split, args.eval_max_examples)
    return train_dataset, eval_dataset


def build_trainer(args: FinetuneArguments, model, processor, training_args: TrainingArguments, train_dataset,
                  eval_dataset) -> FinetuneTrainer:
    """The run's `FinetuneTrainer`: task-counting collator, the task's criterion, generation metrics on the
    validation examples (answers restricted to the training answers for VQA, as the original's trie) and the EMA."""
    from training.collator import UnivalMultitaskCollator

    collator = TaskCountingCollator(UnivalMultitaskCollator(processor, training=True, seed=training_args.seed))
    generation_examples = answer_examples = None
    if eval_dataset is not None and args.generation_eval:
        generation_examples = list(eval_dataset)
        if resolve_task(args.task).output == "answer":
            answer_examples = list(train_dataset.select_columns(["task", "target", "answers"]))
    callbacks = [TaskMixtureCallback(collator)]
    if args.ema_decay is not None:
        callbacks.append(WeightEMA(args.ema_decay, args.ema_start_step))
    return FinetuneTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
        generation_collator=UnivalMultitaskCollator(processor, training=False),
        generation_examples=generation_examples,
        answer_examples=answer_examples,
        generation_overrides={"num_beams": args.eval_num_beams} if args.eval_num_beams else None,
        encouraging_loss=encouraging_settings(args),
    )


def _ema_of(trainer) -> WeightEMA | None:
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, WeightEMA)), None)


def run_summary(args: FinetuneArguments, trainer: FinetuneTrainer, training: dict, label_smoothing: float,
                freeze_embeddings: bool, parameters: dict, output_dir: Path) -> dict:
    """What `finetune_summary.json` records of a run: its settings and `training` (`train_and_summarise`)."""
    criterion = trainer.encouraging_loss
    return {
        "task": args.task,
        "model": args.model,
        **training,
        "label_smoothing": label_smoothing,
        "freeze_embeddings": bool(freeze_embeddings) and not args.lora,
        "processor_sizes": processor_sizes(args),
        "parameters": parameters,
        "lora": {"r": args.lora_r, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                 "target_modules": lora_config(args).target_modules} if args.lora else None,
        "train_modules": args.train_modules,
        "best_model_checkpoint": trainer.state.best_model_checkpoint,
        "merged_dir": str(output_dir / "final_merged") if args.lora and args.merge_lora else None,
        "ema": {"decay": args.ema_decay, "start_step": args.ema_start_step} if args.ema_decay is not None else None,
        "loss": {"type": "encouraging", **criterion} if criterion else {"type": "label_smoothed"},
    }


def finish(args: FinetuneArguments, trainer: FinetuneTrainer, summary: dict, output_dir: Path) -> None:
    """After training: the averaged weights (with an EMA, as the original's --ema-eval / --store-ema) are the
    finetuned model; its final evaluation goes in the summary; the model, or adapter, is saved to `final`, and with
    `merge_lora` the merged model to `final_merged`."""
    ema = _ema_of(trainer)
    if ema is not None:
        ema.copy_to(trainer.model)
    if trainer.eval_dataset is not None and len(trainer.eval_dataset):
        summary["eval"] = trainer.evaluate()
    processor = trainer.processing_class
    model = trainer.accelerator.unwrap_model(trainer.model)
    generation = (model.get_base_model() if args.lora else model).generation_config
    final = output_dir / "final"
    save_final(trainer, processor, final, generation, summary, "finetune_summary.json")  # an adapter, with LoRA
    is_main = trainer.accelerator.is_main_process
    if is_main:
        print(f"[finetune] done in {summary['seconds']} s: train loss {summary['train_loss']:.3f}; saved {final}")
        if "eval" in summary:
            print("[finetune] " + ", ".join(f"{k} {v:.4g}" for k, v in summary["eval"].items()
                                            if isinstance(v, (int, float)) and "runtime" not in k and "per_second" not in k))
    if args.lora and args.merge_lora:
        merged = model.merge_and_unload()
        if is_main:
            merged.save_pretrained(output_dir / "final_merged")
            processor.save_pretrained(output_dir / "final_merged")
            print(f"[finetune] merged model saved to {output_dir / 'final_merged'}")
    trainer.accelerator.wait_for_everyone()


def finetune(args: FinetuneArguments, command_line: dict) -> tuple[FinetuneTrainer, dict]:
    """Finetunes `args.model` on `args.task` with `command_line`'s `TrainingArguments` values (`output_dir`
    default `outputs/finetune`); returns `(trainer, summary)`. `trainer.model` is the finetuned model (a `PeftModel`
    with `lora`; with `merge_lora` its LoRA weights are merged in place after the adapter is saved)."""
    command_line = {"output_dir": "outputs/finetune", **command_line}
    output_dir = Path(command_line["output_dir"])
    distributed_state(command_line)
    if not Path(args.model).exists() and looks_like_path(args.model):
        # `from_pretrained` would take it for a hub repository id and complain about the form of repo ids.
        raise FileNotFoundError(f"--model: model directory {args.model} does not exist")
    if Path(args.model).is_dir() and not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(f"--model: {args.model} has no config.json: not a folder written by `save_pretrained`")
    check_data_files(args)
    source = load_source("data", source_spec(args))
    check_splits(args, source)
    training_args, label_smoothing = task_training_arguments(args, command_line, args.eval_split in source)
    train_dataset, eval_dataset = task_datasets(args, source)
    # The model first: a name that is neither a folder nor a reachable checkpoint gets its explanation (presets).
    model, freeze_embeddings = prepare_model(args, label_smoothing)
    processor = set_processor_sizes(UnivalProcessor.from_pretrained(args.model), processor_sizes(args))
    parameters = count_parameters(model)
    trainer = build_trainer(args, model, processor, training_args, train_dataset, eval_dataset)
    if trainer.accelerator.is_main_process:
        print(f"[finetune] task {args.task!r}: {len(train_dataset)} training examples"
              + (f", {len(eval_dataset)} validation examples" if eval_dataset is not None else ""))
        print(f"[finetune] trainable parameters: {parameters['trainable']:,} of {parameters['total']:,} "
              f"({100 * parameters['fraction']:.2f}%)")
    training = train_and_summarise(trainer, output_dir, training_args.resume_from_checkpoint)
    summary = run_summary(args, trainer, training, label_smoothing, freeze_embeddings, parameters, output_dir)
    finish(args, trainer, summary, output_dir)
    return trainer, summary


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "FINETUNE_TRAINING_ARGS",
    "FinetuneArguments",
    "TASK_DEFAULTS",
    "TOWER_PATTERN",
    "finetune",
    "processor_sizes",
    "select_trainable",
    "source_spec",
    "task_training_arguments",
]
