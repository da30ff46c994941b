"""Sharded training for real (issue 24): `accelerate launch` with the CPU FSDP and DeepSpeed ZeRO-2 configs runs 2
processes over gloo on the synthetic world, ranks holding different modalities; the losses match DDP's, what FSDP
saves loads with `from_pretrained` and equals the sharded model gathered by accelerate, and an FSDP run killed
after a checkpoint resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import REPO_ROOT
from modeling_unival import UnivalForConditionalGeneration


CONFIGS = REPO_ROOT / "training" / "accelerate_configs"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
# The tolerance on the per-step losses of FSDP against DDP with the same global batch: the same arithmetic on
# differently grouped shards (measured: 4e-5 at most); a broken sharding or gradient reduction is off by far more.
LOSS_TOLERANCE = 2e-3
# DeepSpeed's: every parameter gets a (zero) gradient under ZeRO, so AdamW also decays and counts the steps of
# parameters no rank used in a step, which DDP skips (measured: 1.1e-2 at most over 4 steps; the same run with
# another data order differs by 0.12 on average, up to 0.31).
DEEPSPEED_LOSS_TOLERANCE = 3e-2

# training/pretrain.py, SIGKILLed by rank 0 when step KILL_AT_STEP starts (after the checkpoint of the step before).
_KILLER = """
import os, signal, sys
from transformers import Trainer
from training.pretrain import run

step = Trainer.training_step
def dying_step(self, *args, **kwargs):
    if self.state.global_step == int(os.environ["KILL_AT_STEP"]) and self.args.process_index == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, *args, **kwargs)
Trainer.training_step = dying_step
run(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.data.synthetic import generate_world

    path = tmp_path_factory.mktemp("world") / "world"
    generate_world(path, num_examples=80, seed=1)
    return path


def write_recipe(path, world, steps: int, save_steps: int) -> str:
    recipe = {
        "name": "fsdp", "seed": 0, "model": {"preset": "unival-tiny"},
        "processor": {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000},
        "sources": {"world": {"type": "synthetic", "path": str(world), "num_examples": 80, "seed": 1}},
        "stages": [{"name": "mixed", "datasets": [{"source": "world"}], "sampling": {"temperature": 2.0},
                    "eval_max_examples": 4,
                    "training": {"max_steps": steps, "per_device_train_batch_size": 2, "learning_rate": 3e-3,
                                 "logging_steps": 1, "save_steps": save_steps, "seed": 0,
                                 "full_determinism": True}}],
    }
    path.write_text(json.dumps(recipe))
    return str(path)


def launch(script, output, recipe, port: int, *extra, config="fsdp_cpu.yaml", env_extra=None):
    command = [*ACCELERATE, "--config_file", str(CONFIGS / config), "--main_process_port", str(port), *script,
               "--recipe", recipe, "--output_dir", str(output), "--report_to", "none", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), **(env_extra or {}))
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def summary(output):
    return json.loads((output / "mixed" / "final" / "stage_summary.json").read_text())


@pytest.mark.parametrize(
    "shipped_name, cpu_name, section, section_changes",
    [("fsdp_bf16", "fsdp_cpu", "fsdp_config", {"fsdp_sync_module_states": False, "fsdp_cpu_ram_efficient_loading": False}),
     ("deepspeed_zero2_bf16", "deepspeed_cpu", "deepspeed_config", {})],
)
def test_cpu_configs_are_the_shipped_configs_with_the_cpu_changes_only(shipped_name, cpu_name, section, section_changes):
    shipped = yaml.safe_load((CONFIGS / f"{shipped_name}.yaml").read_text())
    cpu = yaml.safe_load((CONFIGS / f"{cpu_name}.yaml").read_text())
    changed = {"mixed_precision": "no", "num_processes": 2}
    assert {k: v for k, v in cpu.items() if k != section} == {
        **{k: v for k, v in shipped.items() if k != section}, **changed}
    assert cpu[section] == {**shipped[section], **section_changes}


PRETRAIN = [str(REPO_ROOT / "training" / "pretrain.py")]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, world):
    """The 4-step mixed-modality recipe on 2 DDP processes: the reference of the sharded engines."""
    root = tmp_path_factory.mktemp("ddp")
    recipe = write_recipe(root / "recipe.json", world, steps=4, save_steps=4)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29562", *PRETRAIN, "--recipe", recipe, "--output_dir", str(root / "out"), "--report_to",
                          "none"], env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT)),
                         capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    result = summary(root / "out")
    assert result["distributed"]["wrapped_model"] == "DistributedDataParallel"
    return recipe, result


def _run_against_ddp(ddp_run, out, port: int, config: str, engine: str, wrapped_model: str, tolerance: float):
    """Launches the DDP run's recipe on 2 processes with `config`; checks the engine that ran, that ranks ran
    different towers, and the 4 losses against DDP's."""
    recipe, ddp = ddp_run
    result = launch(PRETRAIN, out, recipe, port, config=config)
    assert result.returncode == 0, result.stderr[-4000:]
    run = summary(out)
    assert run["distributed"] == {"type": engine, "processes": 2, "wrapped_model": wrapped_model}
    assert sum(1 for group in run["realised_proportions"] if "video" in group or "audio" in group) >= 2
    losses, ddp_losses = torch.tensor(run["losses"]), torch.tensor(ddp["losses"])
    assert len(losses) == 4 and (losses - ddp_losses).abs().max() < tolerance, (losses, ddp_losses)


@pytest.mark.slow
def test_two_process_fsdp_matches_ddp_and_saves_a_loadable_model(tmp_path, ddp_run):
    fsdp_out = tmp_path / "fsdp"
    # ranks had batches of different modalities (towers in FSDP's root unit: no hang)
    _run_against_ddp(ddp_run, fsdp_out, 29561, "fsdp_cpu.yaml", "FSDP", "FullyShardedDataParallel", LOSS_TOLERANCE)

    # the saved model is the sharded model gathered: accelerate's own full-state-dict save of the same step
    final = fsdp_out / "mixed" / "final"
    saved = load_file(final / "model.safetensors")
    gathered = torch.load(fsdp_out / "mixed" / "checkpoint-4" / "pytorch_model_fsdp.bin", weights_only=True)
    for key, value in saved.items():
        torch.testing.assert_close(value, gathered[key], rtol=0, atol=0, msg=key)
    reloaded = UnivalForConditionalGeneration.from_pretrained(final).eval()
    in_memory = UnivalForConditionalGeneration(reloaded.config).eval()
    in_memory.load_state_dict(gathered, strict=False)
    in_memory.tie_weights()
    inputs = {"input_ids": torch.tensor([[0, 713, 16, 10, 2]]), "pixel_values": torch.randn(1, 3, 64, 64),
              "decoder_input_ids": torch.tensor([[0, 713, 16]])}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, in_memory(**inputs).logits, rtol=0, atol=0)


@pytest.mark.slow
def test_fsdp_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path, world):
    recipe = write_recipe(tmp_path / "recipe.json", world, steps=6, save_steps=3)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    pretrain = PRETRAIN
    assert launch(pretrain, straight, recipe, 29563).returncode == 0
    killer = tmp_path / "killer.py"
    killer.write_text(_KILLER)
    result = launch([str(killer)], killed, recipe, 29564, env_extra={"KILL_AT_STEP": "4"})
    assert result.returncode != 0 and f"Signal {int(signal.SIGKILL)} (SIGKILL)" in result.stderr, result.stderr[-3000:]
    assert (killed / "mixed" / "checkpoint-3" / "checkpoint_complete.json").is_file()
    assert not (killed / "mixed" / "checkpoint-6").exists() and not (killed / "mixed" / "final").exists()

    resumed = launch(pretrain, killed, recipe, 29565, "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"[pretrain] resuming from {killed / 'mixed' / 'checkpoint-3'}" in resumed.stdout
    assert summary(killed)["global_step"] == 6 and summary(killed)["distributed"]["type"] == "FSDP"
    a, b = load_file(straight / "mixed" / "final" / "model.safetensors"), load_file(killed / "mixed" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_two_process_deepspeed_zero2_with_mixed_modalities(tmp_path, ddp_run):
    """ZeRO-2 reduces gradient buckets as gradients arrive: without a gradient for every parameter on every rank, ranks
    that ran different towers reduce different buckets and abort (gloo: "Received data size doesn't match")."""
    if not os.environ.get("CI"):  # scripts/setup.sh installs deepspeed, so CI has it; another environment may not
        pytest.importorskip("deepspeed", reason="deepspeed is not installed (scripts/setup.sh installs it)")
    out = tmp_path / "deepspeed"
    _run_against_ddp(
        ddp_run, out, 29566, "deepspeed_cpu.yaml", "DEEPSPEED", "DeepSpeedEngine", DEEPSPEED_LOSS_TOLERANCE
    )
    reloaded = UnivalForConditionalGeneration.from_pretrained(out / "mixed" / "final")
    assert reloaded.config.video_config is not None and reloaded.config.audio_config is not None


def test_with_every_parameter_gives_the_skipped_towers_zero_gradients_and_changes_nothing_else():
    from tiny import media, tiny_model
    from training.trainer import with_every_parameter

    ids = torch.tensor([[0, 713, 16, 10, 2], [0, 5, 6, 7, 2]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids,
              "pixel_values": media("image", 2)}
    plain, touched = tiny_model().train(), tiny_model().train()
    plain(**inputs).loss.backward()
    loss = touched(**inputs).loss
    with_every_parameter(loss, touched).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), touched.named_parameters()):
        if a.grad is None:  # not used by this image batch: the video and audio towers, ...
            assert b.grad is not None and not b.grad.any(), name
        else:
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, msg=name)
    assert any(p.grad is None for p in plain.model.encoder.video_tower.parameters())
