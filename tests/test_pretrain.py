"""training/pretrain.py (the command line) and training/stages.py end to end on a small synthetic world: stages,
task balancing, resume, DDP, recipe changes from the command line, the generation settings saved with each stage."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO_ROOT
from generation_checks import assert_generates_without_warnings, assert_saved_generation_config
from processing import UnivalProcessor
from training.pretrain import run
from training.recipe import apply_overrides, load_recipe, parse_recipe


TASKS_IMAGE = ["caption", "vqa", "visual_grounding", "image_text_matching"]
# The row tasks of an original pretraining file and the tasks derived from them.
PRETRAIN_GROUPS = ["caption", "vqa", "visual_grounding", "image_text_matching", "qa_matching", "grounded_caption"]


def write_recipe(tmp_path, world, stages, model_overrides=None, processor=None):
    recipe = {
        "name": "test",
        "seed": 0,
        "model": {"preset": "unival-tiny", "overrides": model_overrides or {}},
        "processor": {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000,
                      **(processor or {})},
        "sources": {"world": {"type": "synthetic", "path": str(world), "num_examples": 80, "seed": 1}},
        "stages": stages,
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def stage(name, tasks=None, steps=4, generation_task=None, **training):
    return {
        "name": name,
        **({"generation_task": generation_task} if generation_task else {}),
        "datasets": [{"source": "world", **({"tasks": tasks} if tasks else {})}],
        "sampling": {"temperature": 2.0},
        "eval_max_examples": 4,
        "training": {"max_steps": steps, "per_device_train_batch_size": 4, "learning_rate": 3e-3, "logging_steps": 1,
                     "save_steps": 1000, "seed": 0, **training},
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.data.synthetic import generate_world

    path = tmp_path_factory.mktemp("world") / "world"
    generate_world(path, num_examples=80, seed=1)
    return path


def final_weights(output, stage_name):
    return load_file(output / stage_name / "final" / "model.safetensors")


def test_recipe_validation():
    with pytest.raises(ValueError, match="unknown source"):
        parse_recipe({"sources": {}, "stages": [{"name": "a", "datasets": [{"source": "x"}]}]})
    with pytest.raises(ValueError, match="not both"):
        parse_recipe({"sources": {"w": {"type": "synthetic"}},
                      "stages": [{"datasets": [{"source": "w"}], "sampling": {"temperature": 1, "weights": {}}}]})
    with pytest.raises(ValueError, match="unknown key"):
        parse_recipe({"sources": {"w": {"type": "synthetic"}}, "stages": [{"datasets": [{"source": "w"}], "lr": 1}]})
    shipped = load_recipe("synthetic_tiny")
    assert [s.name for s in shipped.stages] == ["image_caption", "image_text", "video_audio"]
    original = load_recipe("unival_original")
    assert original.stages[0].training["learning_rate"] == 2e-4 and original.stages[2].processor["image_size"] == 480
    assert shipped.stages[0].generation_task == "caption"  # the default
    with pytest.raises(ValueError, match="generation_task: unknown task 'nope'"):
        parse_recipe({"sources": {"w": {"type": "synthetic"}},
                      "stages": [{"datasets": [{"source": "w"}], "generation_task": "nope"}]})
    aliased = parse_recipe({"sources": {"w": {"type": "synthetic"}},
                            "stages": [{"datasets": [{"source": "w"}], "generation_task": "refcoco"}]})
    assert aliased.stages[0].generation_task == "visual_grounding"


def test_recipe_values_set_from_the_command_line():
    """`--set KEY.PATH=VALUE`: values read as YAML, stages found by name, unknown sources / stages / keys refused."""
    recipe = load_recipe("synthetic_tiny", ["sources.world.path=/tmp/w", "sources.world.num_examples=200",
                                            "stages.image_text.training.max_steps=7",
                                            "stages.video_audio.processor.image_size=64",
                                            "stages.image_caption.generation_task=vqa"])
    assert recipe.sources["world"]["path"] == "/tmp/w" and recipe.sources["world"]["num_examples"] == 200
    assert recipe.stage("image_text").training["max_steps"] == 7 and recipe.stage("image_caption").training["max_steps"] == 600
    assert recipe.stage("video_audio").processor == {"image_size": 64}
    assert recipe.stage("image_caption").generation_task == "vqa"
    data = {"sources": {"w": {"type": "synthetic"}}, "stages": [{"datasets": [{"source": "w"}]}]}
    assert apply_overrides(data, ["stages.stage1.eval_split=null"])["stages"][0]["eval_split"] is None
    assert "eval_split" not in data["stages"][0]  # a copy
    with pytest.raises(ValueError, match="no source 'wrld'; sources: \\['world'\\]"):
        load_recipe("synthetic_tiny", ["sources.wrld.path=/tmp/w"])
    with pytest.raises(ValueError, match="no stage 'video'"):
        load_recipe("synthetic_tiny", ["stages.video.training.max_steps=1"])
    with pytest.raises(ValueError, match="expected KEY.PATH=VALUE"):
        load_recipe("synthetic_tiny", ["sources.world.path"])
    with pytest.raises(ValueError, match="unknown key"):
        load_recipe("synthetic_tiny", ["stages.video_audio.steps=1"])
    with pytest.raises(ValueError, match="not a mapping"):
        load_recipe("synthetic_tiny", ["sources.world.path.x=1"])


@pytest.mark.slow
def test_two_stage_curriculum_lowers_the_loss_and_hands_weights_on(tmp_path, world):
    recipe = write_recipe(tmp_path, world, [stage("images", TASKS_IMAGE, steps=12),
                                            stage("all", steps=3, generation_task="vqa")],
                          processor={"prompt_types": {"image_text_matching": "prev_output"}})
    output = tmp_path / "run"
    summaries = run(["--recipe", str(recipe), "--output_dir", str(output), "--report_to", "none"])
    assert [s["stage"] for s in summaries] == ["images", "all"]
    # the recipe's decoder layouts are saved with the model, for evaluation and pipelines
    saved = UnivalProcessor.from_pretrained(output / "all" / "final")
    assert saved.prompt_type_of("image_text_matching") == "prev_output" and saved.prompt_type_of("vqa") == "prev_output"
    log = json.loads((output / "images" / "final" / "stage_summary.json").read_text())
    assert set(log["realised_proportions"]) == {f"world/{t}" for t in TASKS_IMAGE}
    # Each stage's model carries its generation task's settings (caption by default), used without a warning.
    from training.data.synthetic import load_world

    train = load_world(world, splits=["train"])["train"]
    for name, task in (("images", "caption"), ("all", "vqa")):
        assert_saved_generation_config(output / name / "final", task)
        examples = [e for e in train if e["task"] == task][:2]
        assert_generates_without_warnings(output / name / "final", examples, task)
    # Stage 2 starts from stage 1's final weights: rerunning stage 2 alone from them reproduces its result.
    first = final_weights(output, "images")
    second = final_weights(output, "all")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    rerun = run(["--recipe", str(recipe), "--output_dir", str(output), "--stages", "all", "--overwrite_stages", "true",
                 "--report_to", "none"])
    again = final_weights(output, "all")
    for key in second:
        torch.testing.assert_close(again[key], second[key], rtol=0, atol=1e-6, msg=key)
    assert rerun[0]["stage"] == "all"
    # Completed stages are skipped on a restart.
    assert run(["--recipe", str(recipe), "--output_dir", str(output), "--report_to", "none"]) == []


@pytest.mark.slow
def test_the_embedded_recipe_runs_on_a_small_world_from_the_command_line(tmp_path):
    """The shipped recipe on a 200-example world of its own, its stages shortened one by one, nothing copied: the
    command line's `--set` changes the recipe, a TrainingArguments flag applies to every stage and each stage says
    so; the output is plain lines (stderr is a pipe)."""
    world, output = tmp_path / "world", tmp_path / "run"
    steps = {"image_caption": 1, "image_text": 1, "video_audio": 2}
    command = [sys.executable, str(REPO_ROOT / "training" / "pretrain.py"), "--output_dir", str(output),
               "--set", f"sources.world.path={world}", "sources.world.num_examples=200",
               *(f"stages.{name}.training.max_steps={count}" for name, count in steps.items()),
               "--per_device_train_batch_size", "4", "--report_to", "none", "--save_strategy", "no"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads((world / "world.json").read_text())["config"]["num_examples"] == 200
    for name, count in steps.items():
        summary = json.loads((output / name / "final" / "stage_summary.json").read_text())
        assert summary["global_step"] == count and summary["command_line"]["per_device_train_batch_size"] == 4
        assert_saved_generation_config(output / name / "final", "caption")
    changed = "per_device_train_batch_size = 4 from the command line (every stage), instead of the recipe's 16"
    assert result.stdout.count(changed) == len(steps), result.stdout
    assert "save_strategy = 'no' from the command line (every stage), instead of the package default 'steps'" in result.stdout
    assert "report_to" not in result.stdout  # `none` is the package default
    assert "it/s]" not in result.stderr and "\r" not in result.stderr and "\x1b[" not in result.stderr


@pytest.mark.slow
def test_loss_goes_down(tmp_path, world):
    recipe = write_recipe(tmp_path, world, [stage("images", ["caption"], steps=15, learning_rate=5e-3)])
    output = tmp_path / "run"
    run(["--recipe", str(recipe), "--output_dir", str(output), "--report_to", "none", "--save_strategy", "no"])
    summary = json.loads((output / "images" / "final" / "stage_summary.json").read_text())
    assert summary["global_step"] == 15
    losses = summary["losses"]
    assert len(losses) == 15
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 1.0, losses  # nats


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, world):
    recipe = write_recipe(tmp_path, world, [stage("images", TASKS_IMAGE, steps=6, save_steps=3)])
    straight = tmp_path / "straight"
    run(["--recipe", str(recipe), "--output_dir", str(straight), "--report_to", "none"])
    # The same run killed after its step-3 checkpoint: drop everything after it, then resume.
    killed = tmp_path / "killed"
    run(["--recipe", str(recipe), "--output_dir", str(killed), "--report_to", "none"])
    import shutil

    shutil.rmtree(killed / "images" / "final")
    shutil.rmtree(killed / "images" / "checkpoint-6")
    run(["--recipe", str(recipe), "--output_dir", str(killed), "--report_to", "none", "--resume_from_checkpoint", "true"])
    a, b = final_weights(straight, "images"), final_weights(killed, "images")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


# Run in a subprocess: training/pretrain.py with `torch.save` replaced, at the step-6 checkpoint, by one that writes
# half of optimizer.pt and then kills its own process with SIGKILL (what `kill -9` or the OOM killer does mid-save).
_KILLED_WHILE_SAVING = """
import os, signal, sys
import torch
from transformers import Trainer
from training.pretrain import run

save = torch.save
def dying_save(obj, f, *args, **kwargs):
    if str(f).endswith(os.path.join("checkpoint-6", "optimizer.pt")):
        save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:
            handle.truncate(os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *args, **kwargs)
torch.save = dying_save
run(sys.argv[1:])
"""


@pytest.mark.slow
def test_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(tmp_path, world):
    """A real process killed (SIGKILL) while writing its step-6 checkpoint: the half-written folder has no completion
    marker, `--resume_from_checkpoint true` skips it with a warning and resumes from checkpoint-3, and the final
    weights equal those of an uninterrupted run, bit for bit."""
    recipe = write_recipe(tmp_path, world, [stage("images", TASKS_IMAGE, steps=9, save_steps=3)])
    arguments = ["--recipe", str(recipe), "--report_to", "none"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")  # the same threads in every run

    def pretrain(*extra, script=(str(REPO_ROOT / "training" / "pretrain.py"),)):
        return subprocess.run([sys.executable, *script, *arguments, *extra], env=env, capture_output=True, text=True,
                              timeout=600)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert pretrain("--output_dir", str(straight)).returncode == 0
    result = pretrain("--output_dir", str(killed), script=("-c", _KILLED_WHILE_SAVING))
    assert result.returncode == -9, result.stderr[-4000:]  # killed, not exited
    checkpoints = killed / "images"
    assert (checkpoints / "checkpoint-3" / "checkpoint_complete.json").is_file()
    assert (checkpoints / "checkpoint-6" / "model.safetensors").is_file()  # written before it was killed
    assert not (checkpoints / "checkpoint-6" / "checkpoint_complete.json").exists()
    assert not (checkpoints / "final").exists()

    resumed = pretrain("--output_dir", str(killed), "--resume_from_checkpoint", "true")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "skipping the incomplete checkpoint" in resumed.stderr and "checkpoint-6" in resumed.stderr
    summary = json.loads((checkpoints / "final" / "stage_summary.json").read_text())
    assert summary["global_step"] == 9
    # the re-written checkpoint-6 is complete now, and its marker lists the files as they are
    marker = json.loads((checkpoints / "checkpoint-6" / "checkpoint_complete.json").read_text())
    assert marker["global_step"] == 6
    assert marker["files"]["optimizer.pt"] == (checkpoints / "checkpoint-6" / "optimizer.pt").stat().st_size
    a, b = final_weights(straight, "images"), final_weights(killed, "images")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_two_process_ddp_run_matches_one_process_with_the_same_global_batch(tmp_path, world):
    """2 CPU processes (gloo) x 2 examples against 1 process x 4 examples, same seed: the sampler's global stream puts
    the same examples in each global batch, so the loss curves agree up to what DDP legitimately changes (BatchNorm
    statistics per rank, float summation order). Ranks get different modalities (towers), which must not hang.
    The agreement is measured against the noise scale: the same run with another data order."""
    recipe = write_recipe(tmp_path, world, [stage("mixed", steps=6, per_device_train_batch_size=2, full_determinism=True)])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    ddp_out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(REPO_ROOT / "training" / "pretrain.py"), "--recipe", str(recipe), "--output_dir", str(ddp_out),
               "--report_to", "none"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (ddp_out / "mixed" / "final" / "model.safetensors").exists()
    # No TrainingArguments is built before the stage's own (with `use_cpu`), so transformers has no cause to say
    # that DDP is off; and stderr is a pipe here: plain lines, no progress bars.
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in result.stderr, result.stderr[-4000:]
    assert "it/s]" not in result.stderr and "\r" not in result.stderr, result.stderr[-4000:]

    def summary(output):
        return json.loads((output / "mixed" / "final" / "stage_summary.json").read_text())

    ddp = summary(ddp_out)
    single_out, other_out = tmp_path / "single", tmp_path / "other-order"
    run(["--recipe", str(recipe), "--output_dir", str(single_out), "--report_to", "none",
         "--per_device_train_batch_size", "4"])
    run(["--recipe", str(recipe), "--output_dir", str(other_out), "--report_to", "none",
         "--per_device_train_batch_size", "4", "--seed", "1"])
    single, other = summary(single_out), summary(other_out)
    assert ddp["global_step"] == single["global_step"] == 6
    # Every global batch held the same tasks in both runs.
    assert ddp["realised_proportions"] == single["realised_proportions"]
    ddp_losses, single_losses, other_losses = (torch.tensor(s["losses"]) for s in (ddp, single, other))
    gap = (ddp_losses - single_losses).abs()
    noise = (other_losses - single_losses).abs().mean()
    assert noise > 0.02, (single_losses, other_losses)  # the data order does matter at this scale
    assert gap.max() < 0.01 and gap.mean() < 0.1 * noise, (ddp_losses, single_losses, other_losses)
    # And the weights end up where the single process put them.
    ddp_weights, single_weights = final_weights(ddp_out, "mixed"), final_weights(single_out, "mixed")
    other_weights = final_weights(other_out, "mixed")
    for key in [k for k in single_weights if k.endswith(("fc1.weight", "shared.weight"))]:
        # Adam turns tiny gradient differences (per-rank BatchNorm) into full-size steps on near-zero gradients,
        # so compare distances: measured 0.11-0.22 of the other data order's.
        drift = (ddp_weights[key] - single_weights[key]).norm()
        assert drift < 0.5 * (other_weights[key] - single_weights[key]).norm(), key


@pytest.mark.slow
def test_pretraining_on_original_tsv_files_and_a_hf_dataset(tmp_path, world):
    """Sources in the original OFA/UnIVAL TSV format (base64 images) and a Hugging Face dataset with a column map."""
    import datasets

    from training.data.readers import write_tsv
    from training.data.synthetic import load_world

    train = load_world(world)["train"]
    captions = [e for e in train if e["task"] == "caption"][:12]
    questions = [e for e in train if e["task"] == "vqa"][:12]
    write_tsv(captions, tmp_path / "caption_train.tsv", "caption")
    write_tsv(questions, tmp_path / "vqa_train.tsv", "vqa")
    # An original pretraining file (8 columns, one row type per line); its rows also yield the derived tasks.
    grounding = [e for e in train if e["task"] == "visual_grounding"][:4]
    write_tsv(captions[:4] + questions[:4] + grounding, tmp_path / "pretrain.tsv", "pretrain")
    hf = datasets.Dataset.from_dict(
        {
            "picture": [e["image"] for e in questions],
            "q": [e["question"] for e in questions],
            "responses": [e["answers"] for e in questions],
        },
        features=datasets.Features(
            {"picture": datasets.Image(), "q": datasets.Value("string"), "responses": datasets.List(datasets.Value("string"))}
        ),
    )
    hf.save_to_disk(tmp_path / "vqa_arrow")
    recipe = {
        "name": "original-formats",
        "model": {"preset": "unival-tiny"},
        "processor": {"image_size": 64},
        "sources": {
            "coco": {"type": "tsv", "kind": "caption", "files": [str(tmp_path / "caption_train.tsv")]},
            "vqa_tsv": {"type": "tsv", "kind": "vqa", "files": [str(tmp_path / "vqa_train.tsv")]},
            "vqa_hf": {"type": "hf", "path": str(tmp_path / "vqa_arrow"), "task": "vqa",
                       "columns": {"image": "picture", "question": "q", "answers": "responses"}},
            "pre": {"type": "tsv", "kind": "pretrain", "files": [str(tmp_path / "pretrain.tsv")], "derive_tasks": True},
        },
        "stages": [{
            "name": "formats",
            "datasets": [{"source": "coco"}, {"source": "vqa_tsv"}, {"source": "vqa_hf"}, {"source": "pre"}],
            "sampling": {"weights": {"coco/caption": 0.5, "vqa_tsv/vqa": 0.25, "vqa_hf/vqa": 0.25,
                                     **{f"pre/{task}": 0.1 for task in PRETRAIN_GROUPS}}},
            "eval_split": None,
            "training": {"max_steps": 3, "per_device_train_batch_size": 4, "save_steps": 1000, "logging_steps": 1},
        }],
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    (summary,) = run(["--recipe", str(path), "--output_dir", str(tmp_path / "out"), "--report_to", "none"])
    assert summary["global_step"] == 3 and all(loss == loss for loss in summary["losses"])
    assert set(summary["sampling_weights"]) == {"coco/caption", "vqa_tsv/vqa", "vqa_hf/vqa"} | {
        f"pre/{task}" for task in PRETRAIN_GROUPS
    }


def test_stage_datasets_follow_the_task_and_modality_filters():
    import datasets

    from training.recipe import DatasetSelection, StageSpec
    from training.sources import build_stage_dataset

    rows = {"task": ["caption", "qa_matching", "qa_matching", "audio_caption", "vqa"],
            "modality": ["image", "image", "video", "audio", "image"], "id": list("abcde")}
    sources = {"w": datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})}
    images_only = StageSpec("s", [DatasetSelection("w", modalities=["image"])])
    data, sizes = build_stage_dataset(images_only, sources, "train")
    assert sizes == {"w/caption": 1, "w/qa_matching": 1, "w/vqa": 1}
    assert sorted(data["id"]) == ["a", "b", "e"]
    chosen = StageSpec("s", [DatasetSelection("w", tasks=["qa_matching"])])
    assert build_stage_dataset(chosen, sources, "train")[1] == {"w/qa_matching": 2}
    no_audio = StageSpec("s", [DatasetSelection("w", tasks=["audio_caption", "vqa"], modalities=["image"])])
    with pytest.raises(ValueError, match="no 'audio_caption' examples"):
        build_stage_dataset(no_audio, sources, "train")
    assert build_stage_dataset(no_audio, sources, "train", skip_missing_tasks=True)[1] == {"w/vqa": 1}
    easy_images = StageSpec("s", [DatasetSelection("w", modalities=["image"], difficulties=[1])])
    with pytest.raises(ValueError, match="no `difficulty` column"):
        build_stage_dataset(easy_images, sources, "train")
    leveled = {"w": datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows | {"difficulty": [1, 2, 1, 1, 3]})})}
    data, sizes = build_stage_dataset(easy_images, leveled, "train")
    assert sizes == {"w/caption": 1} and data["id"] == ["a"]
    assert build_stage_dataset(StageSpec("s", [DatasetSelection("w", difficulties=[1, 3])]), leveled, "train")[1] == {
        "w/audio_caption": 1, "w/caption": 1, "w/qa_matching": 1, "w/vqa": 1}


def test_a_world_generated_with_other_settings_is_refused(world, tmp_path):
    """A recipe must not silently train on a world of another size, seed or generator version left in its path."""
    from training.sources import load_source

    assert len(load_source("world", {"type": "synthetic", "path": str(world), "num_examples": 80, "seed": 1})["train"])
    with pytest.raises(ValueError, match="generated with num_examples=80, seed=1, but the recipe asks for "
                                         "num_examples=120, seed=1"):
        load_source("world", {"type": "synthetic", "path": str(world), "num_examples": 120, "seed": 1})
    other_splits = {"train": 0.9, "validation": 0.05, "test": 0.05}
    with pytest.raises(ValueError, match="split_fractions=.*'train': 0.8.*asks for .*split_fractions=.*'train': 0.9"):
        load_source("world", {"type": "synthetic", "path": str(world), "num_examples": 80, "seed": 1,
                              "split_fractions": other_splits})
    with pytest.raises(ValueError, match=r"unknown synthetic-world option\(s\) \['num_scenes'\]"):
        load_source("world", {"type": "synthetic", "path": str(world), "num_scenes": 80})
    manifest = json.loads((world / "world.json").read_text())
    (tmp_path / "world.json").write_text(json.dumps(manifest | {"generator_version": 1}))
    with pytest.raises(ValueError, match="version 1 of the generator"):
        load_source("world", {"type": "synthetic", "path": str(tmp_path), "num_examples": 80, "seed": 1})


@pytest.mark.parametrize("name", ["ddp_bf16", "fsdp_bf16", "deepspeed_zero2_bf16"])
def test_shipped_accelerate_configs_load(name):
    """The GPU launch configs documented in the README parse with accelerate's own loader (they cannot run here)."""
    import modeling_unival.modeling_unival as modeling
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO_ROOT / "training" / "accelerate_configs" / f"{name}.yaml"))
    assert config.mixed_precision == "bf16" and config.num_processes == 8 and not config.use_cpu
    if config.fsdp_config:
        for cls in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert hasattr(modeling, cls), cls
