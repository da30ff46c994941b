"""The `transformers.Trainer` subclasses of UnIVAL training, and the bookkeeping of the realised task mixture.

- [`UnivalTrainer`]: draws training batches with a [`~training.sampling.TaskBalancedSampler`] and projects to the
  vocabulary at the supervised positions only (pretraining, `training.stages`).
- [`FinetuneTrainer`]: also trains with the original's encouraging loss where the task asks for it, and adds the
  task's generation metrics to every evaluation (finetuning, `training.finetuning`).
- [`TaskCountingCollator`] + [`TaskMixtureCallback`]: the task proportions of the batches actually built, in the logs.
- [`CheckpointCompletion`]: the marker that tells a complete checkpoint from one a killed run left half written.
- [`enable_cpu_fsdp`], [`enable_cpu_deepspeed`]: FSDP and DeepSpeed on CPU processes (gloo), where accelerate falls
  back to plain data parallelism.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
from collections import Counter
from pathlib import Path

import torch
from accelerate.utils import FullyShardedDataParallelPlugin
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from modeling_unival.modeling_unival import supervised_positions
from training.sampling import TaskBalancedSampler


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


#: Written into a checkpoint folder after every other file of it: its presence is what makes a checkpoint complete.
CHECKPOINT_COMPLETE_FILE = "checkpoint_complete.json"


class CheckpointCompletion(TrainerCallback):
    """Writes `CHECKPOINT_COMPLETE_FILE` into a checkpoint once all of it is written: `Trainer`'s files (weights,
    optimizer, scheduler, RNG states, `trainer_state.json`) and every other callback's `on_save` files (the EMA's),
    since [`UnivalTrainer`] keeps this callback last. A run killed while saving leaves a folder without the marker,
    which resuming skips (`training.stages.last_complete_checkpoint`); a `trainer_state.json` alone cannot tell, as
    `Trainer` writes it before the callbacks' files. The marker lists each file's size (a file truncated later is
    caught too) and is itself written under a temporary name, then renamed (atomic on POSIX)."""

    def __init__(self):
        self.pending: Path | None = None  # the folder `UnivalTrainer._save_checkpoint` has just written

    def on_save(self, args, state, control, **kwargs):
        folder, self.pending = self.pending, None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank's files (RNG states) are written before the marker
        if folder is None or not state.is_world_process_zero or not folder.is_dir():
            return
        files = {path.name: path.stat().st_size for path in sorted(folder.iterdir()) if path.is_file()}
        marker = {"global_step": state.global_step, "files": files}
        temporary = folder / f".{CHECKPOINT_COMPLETE_FILE}.tmp"
        temporary.write_text(json.dumps(marker, indent=1))
        os.replace(temporary, folder / CHECKPOINT_COMPLETE_FILE)


def launched_on_cpus_with(engine: str) -> bool:
    """`accelerate launch` with a config of `engine` (`"FSDP"`, `"DEEPSPEED"`) started several processes on a machine
    without a GPU. accelerate then sets up plain multi-CPU data parallelism (its FSDP and DeepSpeed branches are for
    accelerator devices only) and silently drops the engine's plugin, although torch's FSDP runs on CPU over gloo,
    and so does DeepSpeed with its CPU accelerator."""
    return (
        os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() == "true"
        and int(os.environ.get("WORLD_SIZE", "1")) > 1
        and not torch.cuda.is_available()
    )


def _without_offload(config):
    """`config` (an FSDP state-dict config) with `offload_to_cpu=False`."""
    if config is None or not getattr(config, "offload_to_cpu", False):
        return config
    return dataclasses.replace(config, offload_to_cpu=False)


class CpuFullyShardedDataParallelPlugin(FullyShardedDataParallelPlugin):
    """The FSDP plugin of a CPU run. Gathering a state dict "offloaded to CPU" crashes (SIGSEGV, torch 2.13) when the
    shards are on the CPU already, and accelerate's checkpoint functions set `state_dict_config.offload_to_cpu = True`
    whenever several processes run: here every read of the two state-dict configs gives a copy with
    `offload_to_cpu=False`, so such an assignment changes a copy only."""

    @property
    def state_dict_config(self):
        return _without_offload(self._state_dict_config)

    @state_dict_config.setter
    def state_dict_config(self, value):
        self._state_dict_config = value

    @property
    def optim_state_dict_config(self):
        return _without_offload(self._optim_state_dict_config)

    @optim_state_dict_config.setter
    def optim_state_dict_config(self, value):
        self._optim_state_dict_config = value


def enable_cpu_fsdp(accelerator) -> None:
    """Switches an `Accelerator` that accelerate set up for multi-CPU data parallelism to FSDP, with the plugin of
    the launch config (`FullyShardedDataParallelPlugin()` reads the `FSDP_*` variables `accelerate launch` sets):
    what `accelerate` does on GPUs. FSDP on CPU needs `sync_module_states: false` (every rank builds the same
    weights from the same seed and files anyway) and fp32 (`mixed_precision: no`): see
    `training/accelerate_configs/fsdp_cpu.yaml`."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    plugin = CpuFullyShardedDataParallelPlugin()
    if plugin.sync_module_states:
        raise ValueError("FSDP on CPU: set `fsdp_sync_module_states: false` in the accelerate config (torch's FSDP "
                         "cannot broadcast module states from CPU); every rank builds the same weights anyway")
    # The process-wide state too: accelerate re-reads it when an Accelerator is made again (Trainer.train does).
    # accelerate names the CPU `cpu:0`, torch's FSDP computes on `cpu` and refuses a `device_id` that differs.
    for state in (accelerator.state, PartialState()):
        state.distributed_type = DistributedType.FSDP
        state.device = torch.device("cpu")
    accelerator.state.fsdp_plugin = plugin
    accelerator.get_state_dict = types.MethodType(_full_state_dict_on_cpu, accelerator)


def _full_state_dict_on_cpu(accelerator, model, unwrap: bool = True):
    """`Accelerator.get_state_dict` of a CPU FSDP run: the full state dict on rank 0 without the offload to CPU that
    accelerate hard-codes for FSDP (the crash above)."""
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT,
                              FullStateDictConfig(offload_to_cpu=False, rank0_only=True)):
        return model.state_dict()


def with_every_parameter(loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """`loss` plus zero times every trainable parameter, so that each receives a (zero) gradient. DeepSpeed ZeRO
    reduces gradients in buckets as they arrive: ranks whose batches skipped a modality tower (or the image position
    norms, ...) would reduce different buckets and abort on a collective mismatch. DDP has
    `find_unused_parameters` for this; ZeRO has nothing."""
    return loss + 0.0 * sum(parameter.sum() for parameter in model.parameters() if parameter.requires_grad)


def enable_cpu_deepspeed(accelerator) -> None:
    """Switches an `Accelerator` set up for multi-CPU data parallelism to DeepSpeed with the launch config's plugin
    (DeepSpeed's CPU accelerator, gloo): what accelerate does on GPUs."""
    from accelerate import PartialState
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(accelerator.state.mixed_precision)
    plugin.select(_from_accelerator_state=True)
    for state in (accelerator.state, PartialState()):
        state.distributed_type = DistributedType.DEEPSPEED
    accelerator.state.deepspeed_plugins = {"default": plugin}


class UnivalTrainer(Trainer):
    """`Trainer` whose training batches are drawn by a [`TaskBalancedSampler`], and whose checkpoints carry a
    completion marker ([`CheckpointCompletion`]). Launched with an FSDP or DeepSpeed config on CPU processes, it
    runs that engine ([`enable_cpu_fsdp`], [`enable_cpu_deepspeed`]) instead of the data parallelism accelerate falls
    back to; under DeepSpeed every parameter gets a gradient each step ([`with_every_parameter`])."""

    def __init__(self, *args, task_sampler: TaskBalancedSampler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_sampler = task_sampler
        self._completion = CheckpointCompletion()
        self.add_callback(self._completion)

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        # Also when `train()` makes the Accelerator again: accelerate then builds its own (GPU) plugin.
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if launched_on_cpus_with("FSDP") and not isinstance(plugin, CpuFullyShardedDataParallelPlugin):
            enable_cpu_fsdp(self.accelerator)
            self.is_fsdp_enabled = True
        if launched_on_cpus_with("DEEPSPEED") and not self.is_deepspeed_enabled:
            enable_cpu_deepspeed(self.accelerator)
            self.is_deepspeed_enabled = True
            self.propagate_args_to_deepspeed()

    def add_callback(self, callback):
        super().add_callback(callback)
        completion = getattr(self, "_completion", None)
        callbacks = self.callback_handler.callbacks
        if completion is not None and completion in callbacks and callbacks[-1] is not completion:
            callbacks.remove(completion)  # the marker is written after every other callback's files
            callbacks.append(completion)

    def _save_checkpoint(self, model, trial):
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        # Re-saving over an older checkpoint of the same step (a resumed run): its marker goes first, so that an
        # interrupted re-save is not taken for complete.
        if self.args.should_save:
            (folder / CHECKPOINT_COMPLETE_FILE).unlink(missing_ok=True)
        super()._save_checkpoint(model, trial)
        self._completion.pending = folder

    def _get_train_sampler(self, train_dataset=None):
        if self.task_sampler is not None:
            return self.task_sampler
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not return_outputs:
            # A training step needs the loss only: project to the vocabulary at the supervised positions only.
            inputs = {**inputs, "return_logits": False}
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if self.is_deepspeed_enabled and model.training:
            loss, outputs = result if return_outputs else (result, None)
            loss = with_every_parameter(loss, model)
            result = (loss, outputs) if return_outputs else loss
        return result


class FinetuneTrainer(UnivalTrainer):
    """`UnivalTrainer` whose evaluation also generates on (at most `generation_examples`) validation examples and adds
    the task's metrics (`training.evaluation.score_task`) to the metrics: `eval_cider`, ..., `eval_score`."""

    def __init__(self, *args, generation_collator=None, generation_examples=None, answer_examples=None,
                 generation_overrides=None, encouraging_loss: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # {"log_end", "drop_worst_ratio", "drop_worst_after"}: train with `training.losses`' criterion
        self.encouraging_loss = encouraging_loss
        self.generation_collator = generation_collator
        self.generation_examples = generation_examples
        self.answer_examples = answer_examples
        self.generation_overrides = generation_overrides
        self._in_evaluate = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.encouraging_loss is None or return_outputs:  # evaluation reports the model's own loss
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from training.losses import label_smoothed_encouraging_loss

        settings = self.encouraging_loss
        # The decoder inputs are the collator's (`labels` are not passed, so the model computes no loss of its own).
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "label_weights")}
        hidden_states = model(**model_inputs, return_logits=False).decoder_features
        features, targets, weights = supervised_positions(hidden_states, inputs["labels"], inputs.get("label_weights"))
        unwrapped = self.accelerator.unwrap_model(model)
        drop = settings["drop_worst_ratio"] if self.state.global_step >= settings["drop_worst_after"] else 0.0
        loss = label_smoothed_encouraging_loss(
            unwrapped.get_output_embeddings()(features),
            targets,
            unwrapped.config.label_smoothing,
            weights,
            log_end=settings["log_end"],
            drop_worst_ratio=drop,
            num_items_in_batch=num_items_in_batch,
        )
        return with_every_parameter(loss, model) if self.is_deepspeed_enabled and model.training else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        # Only `evaluate()` generates: `predict()` runs the same evaluation loop and must not.
        self._in_evaluate = True
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._in_evaluate = False

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._in_evaluate and self.generation_collator is not None and self.generation_examples:
            output.metrics.update(self.generation_metrics(metric_key_prefix))
        return output

    def generation_metrics(self, prefix: str = "eval") -> dict[str, float]:
        from training.evaluation import evaluate_examples

        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        try:
            results = evaluate_examples(model, self.generation_collator, self.generation_examples,
                                        train_examples=self.answer_examples,
                                        batch_size=self.args.per_device_eval_batch_size,
                                        generation_overrides=self.generation_overrides)
        finally:
            model.train(was_training)
        metrics = {}
        for task, scores in results.items():
            main = next(k for k in scores if not k.startswith("prior_") and k != "examples")
            for name, value in scores.items():
                key = "generation_examples" if name == "examples" else name
                metrics[f"{prefix}_{key}"] = float(value)
            metrics[f"{prefix}_score"] = float(scores[main])
        return metrics


__all__ = [
    "CHECKPOINT_COMPLETE_FILE",
    "CheckpointCompletion",
    "FinetuneTrainer", "TaskCountingCollator", "TaskMixtureCallback",
    "UnivalTrainer",
]
