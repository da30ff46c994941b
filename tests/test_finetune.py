"""training/finetune.py (the command line) and training/finetuning.py on a tiny from-scratch model and a small
synthetic world: per-task defaults, generation metrics in evaluation, the task's generation settings saved, LoRA
(save / reload / merge), training only chosen modules."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from processing import UnivalProcessor
from generation_checks import assert_generates_without_warnings, assert_saved_generation_config
from training.finetune import parse_arguments
from training.finetuning import (
    TASK_DEFAULTS,
    TOWER_PATTERN,
    finetune,
    processor_sizes,
    select_trainable,
    source_spec,
    task_training_arguments,
)
from training.stages import make_processor


SIZES = {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.data.synthetic import generate_world

    path = tmp_path_factory.mktemp("ft_world") / "world"
    generate_world(path, num_examples=300, seed=1)
    return path


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny UnIVAL trained from scratch (random init), saved with a processor sized for it."""
    path = tmp_path_factory.mktemp("ft_base") / "base"
    torch.manual_seed(0)
    UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny")).save_pretrained(path)
    make_processor(SIZES).save_pretrained(path)
    return path


def common_flags(base_model, world, output, steps=4, **extra):
    flags = ["--model", str(base_model), "--world", str(world), "--output_dir", str(output), "--keep_processor_sizes",
             "--max_steps", str(steps), "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
             "--learning_rate", "3e-3", "--warmup_steps", "0", "--logging_steps", "1", "--eval_strategy", "steps",
             "--eval_steps", str(steps), "--save_strategy", "no", "--report_to", "none", "--eval_max_examples", "4",
             "--eval_num_beams", "1", "--seed", "0"]
    for key, value in extra.items():
        flags += [f"--{key}"] + ([] if value is True else [str(value)])
    return flags


def run_finetune(argv):
    """`training/finetune.py ARGV` in this process, returning the trainer too."""
    args, _, training = parse_arguments(argv)
    return finetune(args, training)


def param_names(model):
    return {name for name, _ in model.named_parameters()}


def held_out_examples(world, task, count=2):
    from training.data.synthetic import load_world

    return [e for e in load_world(world, splits=["test"])["test"] if e["task"] == task][:count]


def logits_of(model, processor, world):
    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import load_world

    examples = [e for e in load_world(world, splits=["validation"])["validation"] if e["task"] == "caption"][:2]
    batch = UnivalMultitaskCollator(processor, training=False)(examples)
    batch.pop("label_weights")
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


# ----------------------------------------------------------------------------------------------------------------
# Defaults
# ----------------------------------------------------------------------------------------------------------------


def test_task_defaults_are_applied_and_explicit_flags_override_them(tmp_path, world):
    args, _, given = parse_arguments(["--task", "caption", "--model", "m", "--world", str(world),
                                      "--output_dir", str(tmp_path)])
    training, smoothing = task_training_arguments(args, given, has_eval=True)
    assert training.learning_rate == 1e-5 and training.num_train_epochs == 10 and training.warmup_steps == 0.06
    assert training.max_grad_norm == 1.0 and training.metric_for_best_model == "cider" and training.greater_is_better
    assert training.remove_unused_columns is False and training.weight_decay == 0.01
    assert smoothing == 0.1 and training.label_smoothing_factor == 0.0
    assert processor_sizes(args) == {"image_size": 480}
    assert TASK_DEFAULTS["caption"]["freeze_embeddings"]

    argv = ["--task", "visual_grounding", "--model", "m", "--world", str(world), "--output_dir", str(tmp_path),
            "--learning_rate", "1e-3", "--warmup_steps", "7", "--label_smoothing_factor", "0.2", "--image_size", "64",
            "--metric_for_best_model", "mean_iou"]
    args, _, given = parse_arguments(argv)
    training, smoothing = task_training_arguments(args, given, has_eval=False)
    assert training.learning_rate == 1e-3 and training.warmup_steps == 7
    assert training.num_train_epochs == 10 and training.gradient_accumulation_steps == 4  # refcoco 8 x 4
    assert training.per_device_train_batch_size == 8 and training.metric_for_best_model == "mean_iou"
    assert smoothing == 0.2 and training.label_smoothing_factor == 0.0  # the model's loss smooths, not Trainer
    assert training.eval_strategy == "no"  # no validation split
    assert processor_sizes(args) == {"image_size": 64}
    assert not TASK_DEFAULTS["visual_grounding"]["freeze_embeddings"]
    assert TASK_DEFAULTS["visual_entailment"]["label_smoothing"] == 0.0

    args, *_ = parse_arguments(["--task", "vqa", "--model", "m", "--train_tsv", "a.tsv,b.tsv", "--eval_tsv", "c.tsv",
                                "--media_root", "img"])
    assert source_spec(args) == {"type": "tsv", "kind": "vqa", "files": {"train": ["a.tsv", "b.tsv"],
                                                                         "validation": ["c.tsv"]}, "media_root": "img"}
    args, *_ = parse_arguments(["--task", "visual_entailment", "--model", "m", "--hf_dataset", "d",
                                "--columns", '{"image": "img"}'])
    assert source_spec(args)["columns"] == {"image": "img"} and source_spec(args)["task"] == "visual_entailment"
    with pytest.raises(ValueError, match="--task"):
        parse_arguments(["--task", "nope", "--model", "m"])
    # Tasks are read from the registry: an alias names its task, whose TSV kind is the one named after it.
    args, *_ = parse_arguments(["--task", "refcoco", "--model", "m", "--train_tsv", "r.tsv"])
    assert args.task == "visual_grounding" and source_spec(args)["kind"] == "refcoco"
    args, *_ = parse_arguments(["--task", "snli_ve", "--model", "m", "--train_tsv", "s.tsv"])
    assert source_spec(args)["kind"] == "snli_ve"


def test_select_trainable_modes():
    model = UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny"))
    select_trainable(model, "linear", freeze_embeddings=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers." in n and n.rsplit(".", 2)[-2] in
                             {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"} for n in trainable), trainable
    select_trainable(model, "freeze_towers", freeze_embeddings=False)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(TOWER_PATTERN.search(n) for n in frozen)
    select_trainable(model, r"decoder\.layers\.0\.", freeze_embeddings=False)
    assert all("decoder.layers.0." in n for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="matches no parameter"):
        select_trainable(model, "no_such_module", freeze_embeddings=False)


# ----------------------------------------------------------------------------------------------------------------
# Finetuning runs
# ----------------------------------------------------------------------------------------------------------------

METRIC_KEYS = {"caption": "eval_cider", "vqa": "eval_vqa_score", "visual_grounding": "eval_accuracy@0.5"}


@pytest.mark.parametrize("task", ["caption", "vqa", "visual_grounding"])
def test_finetune_task_evaluates_with_its_metric_and_saves(tmp_path, world, base_model, task):
    output = tmp_path / "run"
    trainer, summary = run_finetune(["--task", task, *common_flags(base_model, world, output)])
    assert summary["global_step"] == 4 and all(math.isfinite(loss) for loss in summary["losses"])
    assert METRIC_KEYS[task] in summary["eval"] and "eval_score" in summary["eval"] and "eval_loss" in summary["eval"]
    assert any(METRIC_KEYS[task] in entry for entry in trainer.state.log_history)  # evaluation during training
    final = output / "final"
    saved = json.loads((final / "finetune_summary.json").read_text())
    assert saved["eval"][METRIC_KEYS[task]] == summary["eval"][METRIC_KEYS[task]]
    assert saved["label_smoothing"] == TASK_DEFAULTS[task]["label_smoothing"]
    reloaded = UnivalForConditionalGeneration.from_pretrained(final)
    processor = UnivalProcessor.from_pretrained(final)
    assert processor.image_processor.size["height"] == 64  # --keep_processor_sizes
    weights, base = load_file(final / "model.safetensors"), load_file(base_model / "model.safetensors")
    # Token embeddings are frozen for caption / VQA (as the original), trained for grounding.
    assert torch.equal(weights["model.shared.weight"], base["model.shared.weight"]) == TASK_DEFAULTS[task]["freeze_embeddings"]
    for name, parameter in reloaded.state_dict().items():
        if name in weights:
            torch.testing.assert_close(parameter, weights[name], rtol=0, atol=0)
    # The finetuned model decodes as the original did for its task, with no generation argument.
    assert_saved_generation_config(final, task)
    assert_generates_without_warnings(final, held_out_examples(world, task), task)


@pytest.mark.slow
def test_finetune_lowers_the_loss_and_keeps_the_best_model(tmp_path, world, base_model):
    output = tmp_path / "run"
    flags = common_flags(base_model, world, output, steps=12, learning_rate="5e-3", eval_steps=6, save_strategy="steps",
                         save_steps=6, load_best_model_at_end=True)
    trainer, summary = run_finetune(["--task", "visual_grounding", *flags])
    losses = summary["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert summary["best_model_checkpoint"] is not None  # chosen by eval_accuracy@0.5 (the task's default)
    assert trainer.args.metric_for_best_model == "accuracy@0.5"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["visual_entailment", "video_caption", "video_qa", "audio_caption"])
def test_finetune_other_task_families(tmp_path, world, base_model, task):
    flags = common_flags(base_model, world, tmp_path / "run", steps=2)
    _, summary = run_finetune(["--task", task, *flags])
    assert all(math.isfinite(loss) for loss in summary["losses"]) and "eval_score" in summary["eval"]


@pytest.mark.slow
def test_lora_adapters_save_reload_and_merge(tmp_path, world, base_model):
    from peft import PeftModel

    output = tmp_path / "lora"
    trainer, summary = run_finetune(["--task", "caption", *common_flags(base_model, world, output, steps=3,
                                                                        learning_rate="1e-2", lora=True)])
    model = trainer.model
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert summary["parameters"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_modules = {n.split(".lora_")[0] for n in trainable}
    assert all(".layers." in n and n.rsplit(".", 1)[-1] in {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
               for n in lora_modules) and not any(TOWER_PATTERN.search(n + ".") for n in lora_modules)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # the adapters learned
    final = output / "final"
    assert (final / "adapter_model.safetensors").exists() and (final / "processor_config.json").exists()
    processor = UnivalProcessor.from_pretrained(final)
    expected = logits_of(model, processor, world)
    reloaded = PeftModel.from_pretrained(UnivalForConditionalGeneration.from_pretrained(base_model), final)
    torch.testing.assert_close(logits_of(reloaded, processor, world), expected, rtol=0, atol=1e-6)
    base_logits = logits_of(UnivalForConditionalGeneration.from_pretrained(base_model), processor, world)
    assert not torch.allclose(base_logits, expected, atol=1e-4)

    # --merge_lora: the same run also writes a merged full model.
    output = tmp_path / "merged"
    run_finetune(["--task", "caption", *common_flags(base_model, world, output, steps=3, learning_rate="1e-2",
                                                     lora=True, merge_lora=True)])
    adapter = PeftModel.from_pretrained(UnivalForConditionalGeneration.from_pretrained(base_model), output / "final")
    merged = UnivalForConditionalGeneration.from_pretrained(output / "final_merged")
    assert not any("lora" in n for n in param_names(merged))
    for directory in ("final", "final_merged"):  # next to the adapter too: `save_model` writes none there
        assert_saved_generation_config(output / directory, "caption")
    merged_processor = UnivalProcessor.from_pretrained(output / "final_merged")
    torch.testing.assert_close(logits_of(merged, merged_processor, world), logits_of(adapter, processor, world),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "freeze_towers"])
def test_train_modules_train_only_the_chosen_parameters(tmp_path, world, base_model, mode):
    output = tmp_path / mode
    trainer, summary = run_finetune(["--task", "caption", *common_flags(base_model, world, output, steps=2,
                                                                        learning_rate="1e-2", train_modules=mode)])
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if mode == "linear":
        expected = {n for n in param_names(model)
                    if ".layers." in n and n.rsplit(".", 2)[-2] in {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}}
    else:  # towers frozen, and the token embeddings (frozen for captioning)
        expected = {n for n in param_names(model) if not TOWER_PATTERN.search(n) and n != "model.shared.weight"}
    assert trainable == expected
    assert summary["parameters"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = load_file(base_model / "model.safetensors")
    after = load_file(output / "final" / "model.safetensors")
    changed = {n for n in param_names(model) if n in base and not torch.equal(base[n], after[n])}
    assert changed and changed <= expected, sorted(changed - expected)
    assert len(changed) > len(expected) // 2  # most chosen parameters did move


@pytest.mark.slow
def test_caption_trains_with_the_encouraging_loss_by_default(tmp_path, world, base_model, monkeypatch):
    """The caption row's criterion is the original's encouraging loss, with the worst tokens dropped from
    `drop_worst_after` on; `--loss label_smoothed` trains with the model's own loss."""
    import training.losses

    calls = []
    real = training.losses.label_smoothed_encouraging_loss

    def recording(*args, **kwargs):
        calls.append(kwargs["drop_worst_ratio"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training.losses, "label_smoothed_encouraging_loss", recording)
    flags = common_flags(base_model, world, tmp_path / "enc", steps=3, drop_worst_after=1, eval_strategy="no")
    _, encouraging = run_finetune(["--task", "caption", *flags])
    assert encouraging["loss"] == {"type": "encouraging", "log_end": 0.75, "drop_worst_ratio": 0.05,
                                   "drop_worst_after": 1}
    assert calls == [0.0, 0.05, 0.05]  # one call per training step; evaluation uses the model's loss
    assert all(math.isfinite(loss) for loss in encouraging["losses"])
    calls.clear()
    flags = common_flags(base_model, world, tmp_path / "ls", steps=3, eval_strategy="no")
    _, plain = run_finetune(["--task", "caption", "--loss", "label_smoothed", *flags])
    assert plain["loss"] == {"type": "label_smoothed"} and calls == []
