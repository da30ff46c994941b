"""Weight-space merging (`training.merge`) on tiny UnIVAL models."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from generation_checks import assert_generates_without_warnings, assert_saved_generation_config
from modeling_unival import UnivalForConditionalGeneration
from tiny import media, text_ids, tiny_model
from training.merge import (
    MergeRecipe,
    check_compatible,
    fuse,
    greedy_soup,
    interpolate,
    interpolate_pair,
    interpolation_sweep,
    main,
    ratatouille,
    recompute_batchnorm,
    save_merged,
    uniform_soup,
)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------------
def batchnorms(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def with_fake_bn_stats(model, seed, count):
    """Give every BatchNorm layer distinct running statistics and `num_batches_tracked = count`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in batchnorms(model):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.num_batches_tracked.fill_(count)
    return model


@pytest.fixture(scope="module")
def model_a():
    return with_fake_bn_stats(tiny_model(seed=0), seed=10, count=7)


@pytest.fixture(scope="module")
def model_b():
    # another seed, other BN statistics, and a different training-only field (dropout), which merging allows
    return with_fake_bn_stats(tiny_model(seed=1, dropout=0.1), seed=11, count=11)


@pytest.fixture(scope="module")
def processor():
    from processing import UnivalImageProcessor, UnivalProcessor

    return UnivalProcessor(image_processor=UnivalImageProcessor(size=128))


@pytest.fixture(scope="module")
def batch():
    """Two samples with an image each, plus decoder inputs."""
    input_ids, attention_mask = text_ids([4, 6], seed=3)
    decoder_input_ids, _ = text_ids([5, 5], seed=4)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": media("image", 2, seed=5),
        "patch_types": torch.tensor([0, 0]),
        "decoder_input_ids": decoder_input_ids[:, :-1],
    }


def logits_of(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def generated(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "decoder_input_ids"}
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=6, num_beams=1, do_sample=False)


def assert_same_state(model, expected):
    got, want = model.state_dict(), expected.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


def assert_tied(model):
    shared = model.model.shared.weight
    assert model.lm_head.weight is shared
    assert model.model.encoder.embed_tokens.weight is shared
    assert model.model.decoder.embed_tokens.weight is shared


# --------------------------------------------------------------------------------------------------------------------
# Interpolation semantics
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_alpha_endpoints_reproduce_each_input(model_a, model_b, batch, alpha):
    expected = model_a if alpha == 1.0 else model_b
    merged = interpolate_pair(model_a, model_b, alpha)
    assert merged is not expected
    assert_same_state(merged, expected)  # parameters and every buffer, num_batches_tracked included
    assert merged.config.dropout == expected.config.dropout  # the config of the weighted input
    assert torch.equal(logits_of(merged, batch), logits_of(expected, batch))
    assert torch.equal(generated(merged, batch), generated(expected, batch))
    assert_tied(merged)


def test_merging_a_model_with_itself_gives_it_back(model_a, batch):
    for merged in (interpolate([model_a, model_a], [0.3, 0.7]), uniform_soup([model_a, model_a, model_a])):
        assert_same_state(merged, model_a)
        assert torch.equal(logits_of(merged, batch), logits_of(model_a, batch))
        assert_tied(merged)


def test_midpoint_is_the_average_and_integer_buffers_come_from_the_first(model_a, model_b):
    before = {k: v.clone() for k, v in model_a.state_dict().items()}
    merged = interpolate_pair(model_a, model_b, 0.5)
    a, b, m = model_a.state_dict(), model_b.state_dict(), merged.state_dict()
    assert set(m) == set(a)
    floating = 0
    for key, value in m.items():
        if value.is_floating_point():
            floating += 1
            assert torch.equal(value, (a[key] + b[key]) / 2), key
        else:
            assert torch.equal(value, a[key]), key
    assert floating > 300
    counts = {int(module.num_batches_tracked) for _, module in batchnorms(merged)}
    assert counts == {7}  # from A, not 9 (their average) nor 11
    bn_a, bn_b, bn_m = (dict(batchnorms(x))["model.encoder.audio_tower.bn0"] for x in (model_a, model_b, merged))
    assert torch.equal(bn_m.running_var, (bn_a.running_var + bn_b.running_var) / 2)  # interpolated by default
    assert_tied(merged)
    assert merged.merge_recipe.integer_buffers_from == "model 0"
    # the inputs are untouched
    assert model_a.lm_head.weight is not merged.lm_head.weight
    assert all(torch.equal(value, before[key]) for key, value in model_a.state_dict().items())


def test_integer_buffers_come_from_the_first_weighted_input(model_a, model_b):
    merged = interpolate([model_a, model_b], [0.0, 1.0])
    assert {int(m.num_batches_tracked) for _, m in batchnorms(merged)} == {11}
    assert merged.merge_recipe.integer_buffers_from == "model 1"


def test_three_weighted_models(model_a, model_b):
    model_c = tiny_model(seed=2)
    weights = [0.2, 0.3, 0.5]
    merged = interpolate([model_a, model_b, model_c], weights)
    states = [x.state_dict() for x in (model_a, model_b, model_c)]
    for key, value in merged.state_dict().items():
        if value.is_floating_point():
            expected = sum(w * s[key] for w, s in zip(weights, states))
            torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    normalised = interpolate([model_a, model_b, model_c], [2, 3, 5], normalize=True)
    assert_same_state(normalised, merged)
    assert normalised.merge_recipe.weights == pytest.approx(weights)


@pytest.mark.parametrize(
    "weights, kwargs, message",
    [
        ([0.5, 0.6], {}, "sum to 1.1"),
        ([1.5, -0.5], {}, "weight 1 is -0.5: weights must be non-negative"),
        ([1.0], {}, "1 weights for 2 models"),
        ([float("nan"), 1.0], {}, "must be finite"),
        ([0.0, 0.0], {"normalize": True}, "sum to 0"),
        ([0.5, 0.5], {"bn": "recompute"}, "needs `bn_batches`"),
        ([0.5, 0.5], {"bn": "median"}, "bn must be one of"),
    ],
)
def test_weights_are_validated(model_a, model_b, weights, kwargs, message):
    with pytest.raises(ValueError, match=message):
        interpolate([model_a, model_b], weights, **kwargs)


def test_alpha_and_inputs_are_validated(model_a, model_b):
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        interpolate_pair(model_a, model_b, 1.2)
    with pytest.raises(ValueError, match="empty"):
        uniform_soup([])
    with pytest.raises(TypeError, match="list of models"):
        interpolate(model_a, [1.0])


def test_state_dicts_and_saved_checkpoints_merge_like_models(model_a, model_b, tmp_path):
    from safetensors.torch import load_file

    reference = interpolate_pair(model_a, model_b, 0.25)
    merged = interpolate_pair(model_a.state_dict(), model_b.state_dict(), 0.25)
    assert isinstance(merged, dict) and list(merged) == list(model_a.state_dict())
    assert merged["lm_head.weight"] is merged["model.shared.weight"]  # still one tensor
    for key, value in reference.state_dict().items():
        assert torch.equal(merged[key], value), key
    # a saved checkpoint holds only `model.shared.weight` of the tied group
    model_b.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in saved
    mixed = interpolate_pair(model_a, saved, 0.25)
    assert_same_state(mixed, reference)
    assert_tied(mixed)


# --------------------------------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second, message",
    [
        ({}, {"d_model": 64}, r"parameter 'model\.shared\.weight' has shape \(59457, 32\) in model 0 but \(59457, 64\) "
         r"in model 1; the configurations differ in d_model: 32 vs 64"),
        ({}, {"vocab_size": 59460}, r"'model\.shared\.weight' has shape \(59457, 32\) in model 0 but \(59460, 32\)"),
        ({}, {"encoder_layers": 3}, r"model 1 has parameter 'model\.encoder\.layers\.2\.\S+' \(shape .*\) that model 0 "
         r"lacks; the configurations differ in encoder_layers: 2 vs 3"),
        ({}, {"video_config": None}, r"parameter 'model\.encoder\.video_tower\.\S+' \(shape .*\) of model 0 is missing "
         r"from model 1"),
        ({"audio_config": None}, {}, r"model 1 has parameter 'model\.encoder\.audio_tower\.\S+' .* that model 0 lacks"),
        ({}, {"attn_scale_factor": 3.0}, r"field 'attn_scale_factor' is 2\.0 in model 0 but 3\.0 in model 1"),
    ],
    ids=["d_model", "vocab", "layers", "missing_tower", "extra_tower", "config_field"],
)
def test_incompatible_models_are_refused_by_name(first, second, message):
    models = [tiny_model(seed=0, **first), tiny_model(seed=1, **second)]
    with pytest.raises(ValueError, match=message):
        interpolate(models, [0.5, 0.5])
    with pytest.raises(ValueError, match=message):
        check_compatible(models)


def test_different_tokenizers_are_refused(model_a, model_b, processor):
    other = copy.deepcopy(processor)
    other.tokenizer.add_tokens(["<merge_test_token>"])
    check_compatible([model_a, model_b], processors=[processor, copy.deepcopy(processor)])
    with pytest.raises(ValueError, match=r"different tokenizers: token '<merge_test_token>' \(id 59457\) of model 1"):
        interpolate([model_a, model_b], [0.5, 0.5], processors=[processor, other])
    with pytest.raises(ValueError, match="different tokenizers"):  # tokenizers work as well as processors
        check_compatible([model_a, model_b], processors=[processor.tokenizer, other.tokenizer])


def test_untied_copy_of_a_tied_weight_is_refused(model_a, model_b):
    untied = dict(model_b.state_dict())
    untied["lm_head.weight"] = untied["lm_head.weight"].clone() + 1
    with pytest.raises(ValueError, match="one tied tensor in model 0 but different tensors in model 1"):
        interpolate([model_a, untied], [0.5, 0.5])


def test_lora_state_dict_is_refused(model_a):
    state = {"base_model.model.q_proj.lora_A.default.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="LoRA tensors"):
        interpolate([model_a, state], [0.5, 0.5])


# --------------------------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------------------------
def test_save_merged_reloads_identically(model_a, model_b, processor, batch, tmp_path):
    from huggingface_hub import ModelCard

    from processing import UnivalProcessor

    merged = interpolate_pair(model_a, model_b, 0.3, names=["caption-model", "vqa-model"], task="caption")
    out = save_merged(merged, tmp_path / "merged", processor=processor)
    for name in ("model.safetensors", "config.json", "generation_config.json", "README.md", "merge_recipe.json",
                 "processor_config.json"):
        assert (out / name).exists(), name
    reloaded = UnivalForConditionalGeneration.from_pretrained(out)
    assert not reloaded.training
    assert_same_state(reloaded, merged)
    assert_tied(reloaded)
    assert torch.equal(logits_of(reloaded, batch), logits_of(merged, batch))
    assert torch.equal(generated(reloaded, batch), generated(merged, batch))
    assert UnivalProcessor.from_pretrained(out).tokenizer.get_vocab() == processor.tokenizer.get_vocab()

    card = ModelCard.load(out / "README.md")
    assert "model-merging" in card.data.tags and card.data.library_name == "transformers"
    for text in ("**Method:** interpolate", "0.3 * A + 0.7 * B", "caption-model", "vqa-model", "interpolated with the "
                 "same weights", "num_batches_tracked", "copied from caption-model"):
        assert text in card.text, text
    recipe = MergeRecipe.from_dict(json.loads((out / "merge_recipe.json").read_text()))
    assert recipe.weights == pytest.approx([0.3, 0.7]) and recipe.inputs == ["caption-model", "vqa-model"]


def test_merge_without_a_task_keeps_no_task_less_generation_config(model_a, model_b, tmp_path):
    # The tiny inputs carry transformers' default generation config (no task's length): a merge of them has no
    # settings to save unless its task is named, and saving refuses rather than write a config that warns.
    merged = interpolate_pair(model_a, model_b, 0.5)
    with pytest.raises(ValueError, match="sets no task's generation settings"):
        save_merged(merged, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_save_merged_needs_a_recipe(model_a, tmp_path):
    with pytest.raises(ValueError, match="no merge recipe"):
        save_merged(model_a, tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# Soups, ratatouille, fusing
# --------------------------------------------------------------------------------------------------------------------
PROBE = "model.encoder.layer_norm.bias"


def probe_model(base, value):
    model = copy.deepcopy(base)
    with torch.no_grad():
        model.get_parameter(PROBE).fill_(value)
    return model


def test_greedy_soup_adds_only_models_that_do_not_lower_the_score(model_a):
    values = [0.8, 1.3, 3.0, 1.1]
    models = [probe_model(model_a, v) for v in values]
    calls = []

    def evaluate(model):  # best when the probe averages to 1
        calls.append(1)
        return -float((model.get_parameter(PROBE).detach().mean() - 1.0) ** 2)

    result = greedy_soup(models, evaluate)
    # order by own score: 1.1, 0.8, 1.3, 3.0; soup {1.1} -> +0.8 (mean 0.95, better) -> +1.3 (worse) -> +3.0 (worse)
    assert result.ingredients == [3, 0]
    assert [h["added"] for h in result.history] == [True, False, False]
    assert [h["candidate"] for h in result.history] == [0, 1, 2]
    assert result.score == pytest.approx(-(0.05**2), rel=1e-4)
    assert len(calls) == 4 + 3
    torch.testing.assert_close(result.model.get_parameter(PROBE), torch.full((32,), 0.95))
    assert result.individual_scores[2] == pytest.approx(-4.0)
    assert result.model.merge_recipe.method == "greedy" and result.model.merge_recipe.weights == [0.5, 0.5]
    assert_tied(result.model)


def test_greedy_soup_keeps_a_model_that_leaves_the_score_equal(model_a):
    result = greedy_soup([model_a, model_a], lambda model: 1.0)
    assert result.ingredients == [0, 1] and result.history[0]["added"]


def test_ratatouille_checks_the_shared_base(model_a, model_b, caplog):
    first, second = copy.deepcopy(model_a), copy.deepcopy(model_b)
    first.config.base_model = second.config.base_model = "unival-tiny-pretrained"
    merged = ratatouille([first, second])
    assert_same_state(merged, uniform_soup([model_a, model_b]))
    assert merged.merge_recipe.method == "ratatouille"
    assert merged.merge_recipe.base_model == "unival-tiny-pretrained"
    ratatouille([first, second], base_model="unival-tiny-pretrained")
    with pytest.raises(ValueError, match="not from 'another-model'"):
        ratatouille([first, second], base_model="another-model")
    other = copy.deepcopy(model_b)
    other.config.base_model = "another-model"
    with pytest.raises(ValueError, match="different pretrained models"):
        ratatouille([first, other])
    with pytest.raises(ValueError, match="model 1 does not"):
        ratatouille([first, model_b])
    with caplog.at_level("WARNING", logger="training.merge"):
        ratatouille([model_a, model_b])  # nothing recorded: architecture check only, with a warning
    assert "only the architecture is checked" in caplog.text
    with pytest.raises(ValueError, match="no model records"):
        ratatouille([model_a, model_b], require_base_model=True)


def test_fuse_averages_then_finetunes(model_a, model_b):
    input_ids, attention_mask = text_ids([5, 7], seed=8)
    labels, _ = text_ids([4, 4], seed=9)
    training_batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels[:, 1:]}
    average = uniform_soup([model_a, model_b])
    seen = {}

    def few_steps(model):
        seen["start"] = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(0)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        model.train()
        losses = []
        for _ in range(4):
            loss = model(**training_batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        seen["losses"] = losses
        return model.eval()

    fused = fuse([model_a, model_b], few_steps)
    for key, value in average.state_dict().items():
        assert torch.equal(seen["start"][key], value), key
    assert seen["losses"][-1] < seen["losses"][0]
    assert not torch.equal(fused.lm_head.weight, average.lm_head.weight)
    assert_tied(fused)
    assert fused.merge_recipe.method == "fusing" and fused.merge_recipe.details["then_finetuned_with"] == "few_steps"
    in_place = fuse([model_a, model_b], lambda model: None)  # a finetune_fn may train in place and return None
    assert_same_state(in_place, average)


# --------------------------------------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft 0.21 on transformers 5
def test_lora_adapters_are_merged_into_their_base_first(model_a, model_b, batch):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    lora_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(model_a), lora_config).eval()
    lora_b = peft_model.base_model.model.model.encoder.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert lora_b.abs().sum() > 0
    manual = copy.deepcopy(peft_model).merge_and_unload()

    merged = interpolate_pair(peft_model, model_b, 0.5)
    assert_same_state(merged, interpolate_pair(manual, model_b, 0.5))
    assert_tied(merged)
    assert "lora_merged_inputs" in merged.merge_recipe.details
    without_lora = interpolate_pair(model_a, model_b, 0.5)
    assert not torch.equal(
        merged.get_parameter("model.encoder.layers.0.self_attn.q_proj.weight"),
        without_lora.get_parameter("model.encoder.layers.0.self_attn.q_proj.weight"),
    )
    # the PeftModel given is left as it was (merged on a copy)
    assert hasattr(peft_model.base_model.model.model.encoder.layers[0].self_attn.q_proj, "lora_A")
    assert_same_state(interpolate_pair(peft_model, model_b, 1.0), manual)


# --------------------------------------------------------------------------------------------------------------------
# BatchNorm statistics
# --------------------------------------------------------------------------------------------------------------------
def test_recompute_batchnorm_sets_running_stats_from_data(model_a, model_b, batch):
    reference = interpolate_pair(model_a, model_b, 0.5)
    name, first_bn = batchnorms(reference)[0]
    captured = {}
    handle = first_bn.register_forward_pre_hook(lambda module, args: captured.setdefault("input", args[0].detach()))
    with torch.no_grad():  # in eval mode the first BatchNorm's input does not depend on any BatchNorm statistics
        reference.get_encoder()(**{k: v for k, v in batch.items() if k != "decoder_input_ids"})
    handle.remove()
    features = captured["input"]

    merged = interpolate_pair(model_a, model_b, 0.5, bn="recompute", bn_batches=[batch])
    bn = merged.get_submodule(name)
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var, features.var(dim=(0, 2, 3), unbiased=True))
    assert int(bn.num_batches_tracked) == 1
    assert bn.momentum == first_bn.momentum and not bn.training and not merged.training
    # the towers that saw no data keep the interpolated statistics
    kept = merged.merge_recipe.details["batchnorm_recompute"]["kept_layers"]
    assert "model.encoder.audio_tower.bn0" in kept and "model.encoder.video_tower.bn1" in kept
    audio = "model.encoder.audio_tower.bn0"
    assert torch.equal(merged.get_submodule(audio).running_mean, reference.get_submodule(audio).running_mean)
    assert merged.merge_recipe.batchnorm == "recompute"
    # everything else is the plain interpolation
    recomputed = {f"{n}.{b}" for n, _ in batchnorms(merged) if n not in kept for b in ("running_mean", "running_var",
                                                                                           "num_batches_tracked")}
    for key, value in reference.state_dict().items():
        if key not in recomputed:
            assert torch.equal(merged.state_dict()[key], value), key


def test_recompute_batchnorm_api(model_a, batch):
    model = copy.deepcopy(model_a)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = recompute_batchnorm(model, lambda: iter([batch, batch, batch]), max_batches=2)
    assert summary["batches"] == 2 and summary["recomputed_layers"] > 0
    assert int(model.get_submodule(batchnorms(model)[0][0]).num_batches_tracked) == 2
    with pytest.raises(ValueError, match="no batches"):
        recompute_batchnorm(model, [])
    untouched = copy.deepcopy(model_a)
    with pytest.raises(ValueError):  # a failing forward pass leaves the statistics as they were
        recompute_batchnorm(untouched, [{**batch, "pixel_values": batch["pixel_values"][:, :1]}])
    for key, value in untouched.state_dict().items():
        assert torch.equal(value, before[key]), key


# --------------------------------------------------------------------------------------------------------------------
# Interpolation sweep (hook for the paper's experiment)
# --------------------------------------------------------------------------------------------------------------------
def test_interpolation_sweep_writes_csv_and_png(model_a, model_b, tmp_path):
    def closeness(target):
        return lambda model: -float((model.lm_head.weight - target.lm_head.weight).detach().norm())

    fns = {"task_a": closeness(model_a), "task_b": closeness(model_b)}
    rows = interpolation_sweep(model_a, model_b, [0.0, 0.5, 1.0], fns, out_dir=tmp_path)
    assert [row["alpha"] for row in rows] == [0.0, 0.5, 1.0]
    assert rows[-1]["task_a"] == 0.0 and rows[0]["task_b"] == 0.0
    assert rows[0]["task_a"] < rows[1]["task_a"] < rows[2]["task_a"]
    lines = (tmp_path / "interpolation_sweep.csv").read_text().splitlines()
    assert lines[0] == "alpha,task_a,task_b" and len(lines) == 4
    assert (tmp_path / "interpolation_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_pair(model_a, model_b, processor, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge_cli")
    for name, model in (("a", model_a), ("b", model_b)):
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.data.synthetic import WorldConfig, write_world

    root = tmp_path_factory.mktemp("merge_world") / "world"
    write_world(root, WorldConfig(num_examples=30, seed=0), modalities=("image",), tasks=("caption",))
    return root


@pytest.mark.slow
def test_cli_interpolates_two_saved_models(saved_pair, world, processor):
    from training.merge import schema_batches

    out = saved_pair / "merged"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "training.merge", "--models", str(saved_pair / "a"), str(saved_pair / "b"),
               "--alpha", "0.3", "--bn", "recompute", "--bn-data", str(world), "--bn-tasks", "caption",
               "--bn-batches", "1", "--batch-size", "2", "--task", "caption", "--out", str(out)]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for line in ("[merge] loading", "[merge] 1 batches for the BatchNorm statistics", "[merge] BatchNorm statistics "
                 "recomputed on 1 batches", "[merge] done: interpolate merge of 2 models"):
        assert line in completed.stdout, line

    first, second = (UnivalForConditionalGeneration.from_pretrained(saved_pair / n) for n in ("a", "b"))
    bn_batches = schema_batches(world, processor, split="train", tasks=["caption"], batch_size=2, max_examples=2)
    expected = interpolate_pair(first, second, 0.3, bn="recompute", bn_batches=bn_batches)
    reloaded = UnivalForConditionalGeneration.from_pretrained(out)
    statistics = {f"{n}.{b}" for n, _ in batchnorms(expected) for b in ("running_mean", "running_var")}
    got = reloaded.state_dict()
    for key, value in expected.state_dict().items():
        if key in statistics:  # another process: allow for floating-point noise in the recomputed statistics
            torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(got[key], value), key
    assert int(reloaded.model.encoder.image_tower.embedder.embedder.normalization.num_batches_tracked) == 1
    assert int(reloaded.model.encoder.audio_tower.bn0.num_batches_tracked) == 7  # no audio data: kept, from A
    assert_tied(reloaded)
    assert (out / "processor_config.json").exists()
    from training.data.synthetic import load_world

    assert_saved_generation_config(out, "caption")
    captions = [e for e in load_world(world, splits=["test"])["test"] if e["task"] == "caption"][:2]
    assert_generates_without_warnings(out, captions, "caption")
    readme = (out / "README.md").read_text()
    for text in ("python -m training.merge --models", "0.3 * A + 0.7 * B", "recomputed on", "split train, 1 batches"):
        assert text in readme, text


def test_cli_greedy_soup(saved_pair, world, capsys):
    out = saved_pair / "greedy"
    main(["--models", str(saved_pair / "a"), str(saved_pair / "b"), "--method", "greedy", "--eval-data", str(world),
          "--eval-tasks", "caption", "--eval-max-examples", "4", "--batch-size", "2", "--task", "caption",
          "--out", str(out)])
    printed = capsys.readouterr().out
    assert "[merge] greedy soup: + " in printed and "[merge] done: greedy merge of 2 models" in printed
    recipe = json.loads((out / "merge_recipe.json").read_text())
    assert recipe["method"] == "greedy" and len(recipe["details"]["history"]) == 1
    assert set(recipe["details"]["individual_scores"]) == {str(saved_pair / "a"), str(saved_pair / "b")}
    assert recipe["details"]["evaluation"].startswith("-cross-entropy on")
    reloaded = UnivalForConditionalGeneration.from_pretrained(out)
    assert_tied(reloaded)


def test_cli_rejects_inconsistent_options(saved_pair, capsys):
    a, b = str(saved_pair / "a"), str(saved_pair / "b")
    for argv in (
        ["--models", a, b, "--alpha", "0.3", "--weights", "0.5", "0.5"],
        ["--models", a, b, "--method", "greedy"],
        ["--models", a, b, "--bn", "recompute"],
        ["--models", a, b, a, "--alpha", "0.5"],
        ["--models", a, b, "--alpha", "0.5", "--task", "no-such-task"],
    ):
        with pytest.raises(SystemExit):
            main([*argv, "--out", str(saved_pair / "never")])
    assert not (saved_pair / "never").exists()


def test_cli_refuses_an_input_as_output_and_a_missing_model(saved_pair, capsys):
    a, b = str(saved_pair / "a"), str(saved_pair / "b")
    before = (saved_pair / "a" / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit):
        main(["--models", a, b, "--alpha", "0.5", "--task", "caption", "--out", a])
    assert "would overwrite its weights" in capsys.readouterr().err
    assert (saved_pair / "a" / "model.safetensors").read_bytes() == before
    with pytest.raises(SystemExit):
        main(["--models", a, str(saved_pair / "missing"), "--alpha", "0.5", "--task", "caption",
              "--out", str(saved_pair / "never")])
    error = capsys.readouterr().err
    assert "missing" in error and "Repo id" not in error, error


def test_sweep_figure_has_one_panel_per_metric_and_names_the_models():
    from training.merge.plotting import sweep_figure

    rows = [{"alpha": a, "caption CIDEr-D": 100 + 50 * a, "VQA score": 60 - 10 * a} for a in (0.0, 0.5, 1.0)]
    figure = sweep_figure(rows, ["caption CIDEr-D", "VQA score"], "title", ("caption finetune", "VQA finetune"))
    first, second, front = figure.axes
    assert [first.get_title(), second.get_title()] == ["caption CIDEr-D", "VQA score"]
    assert "0 = VQA finetune" in first.get_xlabel() and "1 = caption finetune" in first.get_xlabel()
    # each metric on its own axis: the ranges do not have to share a scale
    assert first.get_ylim()[0] > second.get_ylim()[1]
    assert (front.get_xlabel(), front.get_ylabel()) == ("caption CIDEr-D", "VQA score")
    assert len(sweep_figure(rows, ["caption CIDEr-D"]).axes) == 1
