"""training.ema.WeightEMA: the average's formula, Trainer integration, resume, and finetuning's --ema_decay."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from training.ema import EMA_FILE, WeightEMA


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.frozen = nn.Linear(3, 1)
        self.frozen.requires_grad_(False)

    def forward(self, x, labels=None):
        out = self.linear(x).squeeze(-1) + 0 * self.frozen(x).squeeze(-1)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


def dataset(n=64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


def train(tmp_path, ema, steps=8, **kwargs):
    torch.manual_seed(0)
    model = Regressor()
    history = []

    class Record(TrainerCallback):  # the weights after every optimizer step
        def on_step_end(self, args, state, control, model=None, **kw):
            history.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    settings = {"save_strategy": "no", "logging_steps": 1, "seed": 0, "report_to": [], "dataloader_pin_memory": False,
                **kwargs}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8, learning_rate=0.1,
                             **settings)
    trainer = Trainer(model=model, args=args, train_dataset=dataset(), callbacks=[Record(), ema])
    return trainer, model, history


def test_average_follows_the_formula_and_skips_frozen_parameters(tmp_path):
    ema = WeightEMA(decay=0.5, start_step=3)
    trainer, model, history = train(tmp_path, ema)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    assert set(ema.shadow) == {"linear.weight", "linear.bias"}
    for name in ema.shadow:
        expected = start[name].clone()
        for step, weights in enumerate(history, start=1):
            if step >= 3:
                expected = 0.5 * expected + 0.5 * weights[name]
        torch.testing.assert_close(ema.shadow[name], expected)
    trained = model.linear.weight.detach().clone()
    with ema.applied(model):
        torch.testing.assert_close(model.linear.weight.detach(), ema.shadow["linear.weight"])
    assert torch.equal(model.linear.weight.detach(), trained)  # restored


def test_resumed_run_ends_with_the_same_average(tmp_path):
    straight = WeightEMA(decay=0.9)
    train(tmp_path / "a", straight, save_strategy="steps", save_steps=4)[0].train()
    killed = WeightEMA(decay=0.9)
    trainer, _, _ = train(tmp_path / "b", killed, save_strategy="steps", save_steps=4)
    trainer.train()
    assert (tmp_path / "b" / "checkpoint-4" / EMA_FILE).exists()
    resumed = WeightEMA(decay=0.9)
    trainer, _, _ = train(tmp_path / "b", resumed, save_strategy="steps", save_steps=4)
    trainer.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-4"))
    for name in straight.shadow:
        torch.testing.assert_close(resumed.shadow[name], straight.shadow[name], rtol=0, atol=1e-7)
    stored = load_file(tmp_path / "a" / "checkpoint-8" / EMA_FILE)
    torch.testing.assert_close(stored["linear.weight"], straight.shadow["linear.weight"])


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(decay=1.0)


@pytest.mark.slow
def test_finetune_saves_the_averaged_weights(tmp_path):
    from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
    from training.data.synthetic import generate_world
    from training.finetune import parse_arguments
    from training.finetuning import finetune
    from training.stages import make_processor

    world = tmp_path / "world"
    generate_world(world, num_examples=60, seed=2)
    base = tmp_path / "base"
    torch.manual_seed(0)
    UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny")).save_pretrained(base)
    make_processor({"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000}).save_pretrained(base)
    flags = ["--task", "caption", "--model", str(base), "--world", str(world), "--keep_processor_sizes",
             "--max_steps", "3", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--save_strategy", "no",
             "--eval_strategy", "no", "--report_to", "none", "--ema_decay", "0.5", "--eval_max_examples", "2",
             "--output_dir", str(tmp_path / "run")]
    args, _, training = parse_arguments(flags)
    trainer, summary = finetune(args, training)
    ema = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, WeightEMA))
    saved = load_file(tmp_path / "run" / "final" / "model.safetensors")
    key = "model.encoder.layers.0.mlp.fc1.weight"
    torch.testing.assert_close(saved[key], ema.shadow[key])
    assert summary["ema"] == {"decay": 0.5, "start_step": 0}
    assert json.loads((tmp_path / "run" / "final" / "finetune_summary.json").read_text())["ema"]["decay"] == 0.5
