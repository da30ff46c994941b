"""Exponential moving average (EMA) of the weights during training, as the original's VQA finetunes
(`--uses-ema --store-ema --ema-fp32`, decay 0.9999; reference section 7.3), for any `transformers.Trainer`.

    ema = WeightEMA(decay=0.9999)
    trainer = Trainer(..., callbacks=[ema])
    trainer.train()
    with ema.applied(trainer.model):      # evaluate or save with the averaged weights
        trainer.save_model("final")

After every optimizer step, each trainable parameter's float32 shadow becomes `decay * shadow + (1 - decay) * param`
(fairseq's EMA: no warm-up, updates from `start_step` on). Buffers (BatchNorm statistics) are not averaged: they
are the model's own, as in fairseq. The shadow is written next to every checkpoint (`ema.safetensors`) and read
back when a run resumes, so a resumed run ends with the same average as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR


EMA_FILE = "ema.safetensors"
logger = logging.getLogger(__name__)


class WeightEMA(TrainerCallback):
    """A `TrainerCallback` keeping a float32 exponential moving average of the trainable parameters."""

    def __init__(self, decay: float = 0.9999, start_step: int = 0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.shadow: dict[str, torch.Tensor] = {}

    @staticmethod
    def _parameters(model) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    @staticmethod
    def _checkpoint_dir(args, state) -> Path:
        """The folder `Trainer` writes (and resumes) the checkpoint of the current step in."""
        return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.shadow = {name: p.detach().float().clone() for name, p in self._parameters(model).items()}
        checkpoint = self._checkpoint_dir(args, state) / EMA_FILE
        if state.global_step == 0:
            return
        if not checkpoint.exists():
            logger.warning("resuming at step %d without %s: the weight average restarts from the current weights",
                           state.global_step, checkpoint)
            return
        stored = load_file(checkpoint)  # resuming: continue the stored average
        if stored.keys() != self.shadow.keys():
            raise ValueError(f"{checkpoint} averages other parameters than the model trains")
        self.shadow = {name: tensor.to(self.shadow[name].device) for name, tensor in stored.items()}

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step < self.start_step:
            return
        for name, param in self._parameters(model).items():
            self.shadow[name].lerp_(param.detach().float(), 1.0 - self.decay)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = self._checkpoint_dir(args, state)
            folder.mkdir(parents=True, exist_ok=True)
            save_file({name: t.contiguous().cpu() for name, t in self.shadow.items()}, str(folder / EMA_FILE))

    @torch.no_grad()
    def copy_to(self, model) -> None:
        """Puts the averaged weights into `model`'s trainable parameters."""
        parameters = self._parameters(model)
        if parameters.keys() != self.shadow.keys():
            raise ValueError("the model's trainable parameters differ from the averaged ones")
        for name, param in parameters.items():
            param.copy_(self.shadow[name].to(param.dtype))

    @contextlib.contextmanager
    def applied(self, model):
        """Temporarily puts the averaged weights into `model` (its own are restored on exit)."""
        backup = {name: p.detach().clone() for name, p in self._parameters(model).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, param in self._parameters(model).items():
                    param.copy_(backup[name])


__all__ = ["EMA_FILE", "WeightEMA"]
