"""Model tests in the manner of transformers' ModelTesterMixin, on a tiny UnIVAL."""

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration, UnivalModel
from modeling_unival.modeling_unival import label_smoothed_cross_entropy, token_relative_position_bucket
from tiny import MODALITY_KEYS, media, text_ids, tiny_config, tiny_model
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForSeq2SeqLM


def batch_for(kinds, seed=0, text_lengths=None, target_length=5):
    """A batch whose sample i carries modality kinds[i] ("image", "video", "audio" or "text")."""
    text_lengths = text_lengths or [3 + (i % 3) for i in range(len(kinds))]
    input_ids, attention_mask = text_ids(text_lengths, seed=seed)
    decoder_input_ids, _ = text_ids([target_length] * len(kinds), seed=seed + 1)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids[:, :-1]}
    patch_types = []
    for kind in kinds:
        patch_types.append(MODALITY_KEYS[kind][1] if kind in MODALITY_KEYS else -1)
    for kind, (key, _) in MODALITY_KEYS.items():
        n = kinds.count(kind)
        if n:
            rows = [media(kind, 1, seed=seed * 100 + i) for i, k in enumerate(kinds) if k == kind]
            batch[key] = torch.cat(rows)
    if any(kind != "text" for kind in kinds):
        batch["patch_types"] = torch.tensor(patch_types)
    return batch


def select_sample(batch, index):
    """The inputs of sample `index` alone, without its padding."""
    kinds = batch.get("patch_types")
    length = int(batch["attention_mask"][index].sum())
    single = {
        "input_ids": batch["input_ids"][index : index + 1, :length],
        "attention_mask": batch["attention_mask"][index : index + 1, :length],
        "decoder_input_ids": batch["decoder_input_ids"][index : index + 1],
    }
    if kinds is not None and kinds[index] >= 0:
        key = [k for k, (name, t) in MODALITY_KEYS.items() if t == kinds[index]][0]
        name = MODALITY_KEYS[key][0]
        row = int((kinds[:index] == kinds[index]).sum())
        single[name] = batch[name][row : row + 1]
        single["patch_types"] = kinds[index : index + 1]
    return single


# ----------------------------------------------------------------------------------------------------------------


def test_config_round_trip(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, UnivalConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.video_config.hidden_sizes == config.video_config.hidden_sizes
    assert loaded.auto_map["AutoModelForImageTextToText"].endswith("UnivalForConditionalGeneration")


def test_config_rejects_bad_values():
    # transformers 5 configs validate through huggingface_hub's strict dataclasses.
    with pytest.raises(StrictDataclassClassValidationError, match="divisible"):
        UnivalConfig.from_preset("unival-tiny", encoder_attention_heads=5)
    with pytest.raises(ValueError, match="unknown UnIVAL preset"):
        UnivalConfig.from_preset("unival-huge")


def test_released_preset_size():
    """The released-size model: ~0.25B parameters with image and video towers (paper), 330M with audio too."""
    config = UnivalConfig.from_preset("unival-base")
    with torch.device("meta"):
        model = UnivalForConditionalGeneration(config)
    unique = {id(p): p.numel() for p in model.parameters()}
    total = sum(unique.values())
    audio = sum(p.numel() for p in model.model.encoder.audio_tower.parameters())
    audio += sum(p.numel() for n, p in model.model.encoder.named_parameters() if n.startswith(("audio_proj", "embed_audio")))
    # The original counts (reference doc) 250,489,072 without audio. Not ported: its ImageNet fc head (2,049,000)
    # and the decoder's image-code generation tables (1,765x768 positions, 2 LayerNorms, 6 relative tables of
    # 6,892x12 = 1,854,816).
    assert total - audio == 250_489_072 - 2_049_000 - 1_854_816
    assert 300e6 < total < 330e6


def test_save_and_reload_identical(tmp_path):
    model = tiny_model()
    batch = batch_for(["image", "text"])
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert (tmp_path / "modeling_unival.py").exists() and (tmp_path / "towers.py").exists()
    reloaded = UnivalForConditionalGeneration.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.shared.weight.data_ptr()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=0)


def test_auto_classes_load_saved_directory(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path), UnivalModel)
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(tmp_path), UnivalForConditionalGeneration)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), UnivalForConditionalGeneration)


@pytest.mark.slow
def test_trust_remote_code_without_the_package(tmp_path):
    model = tiny_model()
    batch = batch_for(["video", "audio", "image"])
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "ckpt")
    torch.save({"batch": batch, "expected": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("modeling_unival", "processing", "training", "hub_upload"):
            sys.modules[name] = None  # make the installed package unimportable
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoModelForImageTextToText
        io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)
        for auto in (AutoModelForSeq2SeqLM, AutoModelForImageTextToText):
            model = auto.from_pretrained({str(tmp_path / 'ckpt')!r}, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                logits = model(**io["batch"]).logits
            torch.testing.assert_close(logits, io["expected"], rtol=0, atol=1e-6)
        print("remote code ok")
        """
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code ok" in result.stdout


@pytest.mark.parametrize("kind", ["text", "image", "video", "audio"])
def test_batch_equals_single(kind):
    model = tiny_model()
    batch = batch_for([kind] * 3)
    with torch.no_grad():
        batched = model(**batch).logits
        for index in range(3):
            single = model(**select_sample(batch, index)).logits
            torch.testing.assert_close(batched[index : index + 1], single, rtol=0, atol=1e-5)


@pytest.mark.parametrize("entangle", [False, True])
def test_mixed_modality_batch_equals_each_sample_alone(entangle):
    model = tiny_model(entangle_position_embedding=entangle)
    kinds = ["image", "text", "video", "audio", "image", "audio"]
    batch = batch_for(kinds, text_lengths=[3, 6, 2, 4, 5, 1])
    with torch.no_grad():
        outputs = model(**batch)
        for index in range(len(kinds)):
            single_inputs = select_sample(batch, index)
            single = model(**single_inputs)
            torch.testing.assert_close(outputs.logits[index : index + 1], single.logits, rtol=0, atol=1e-5)
            # Encoder outputs at the sample's real positions equal the single run's.
            valid = outputs.encoder_attention_mask[index].bool()
            torch.testing.assert_close(
                outputs.encoder_last_hidden_state[index][valid], single.encoder_last_hidden_state[0], rtol=0, atol=1e-5
            )


def test_patch_masks_turn_patches_into_padding():
    model = tiny_model()
    batch = batch_for(["image", "image"])
    batch["patch_masks"] = torch.tensor([True, False])
    with torch.no_grad():
        out = model(**batch)
        text_only = model(**{**select_sample(batch, 1), "pixel_values": None, "patch_types": None})
    num_patches = out.encoder_attention_mask.shape[1] - batch["input_ids"].shape[1]
    assert out.encoder_attention_mask[1, :num_patches].eq(0).all()
    assert out.encoder_attention_mask[0, :num_patches].eq(1).all()
    # A sample whose patches are masked decodes as if it had no image.
    torch.testing.assert_close(out.logits[1:2], text_only.logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("entangle", [False, True])
def test_cached_generation_equals_uncached(entangle):
    model = tiny_model(entangle_position_embedding=entangle)
    batch = batch_for(["image", "audio", "text"])
    del batch["decoder_input_ids"]
    kwargs = dict(max_new_tokens=12, do_sample=False, num_beams=1, return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        cached = model.generate(**batch, use_cache=True, **kwargs)
        uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(torch.stack(cached.logits), torch.stack(uncached.logits), rtol=0, atol=1e-5)
    # The teacher-forced pass over the generated prefix gives the same step logits.
    with torch.no_grad():
        forced = model(**batch, decoder_input_ids=cached.sequences[:, :-1]).logits
    torch.testing.assert_close(forced, torch.stack(cached.logits, dim=1), rtol=0, atol=1e-5)


def test_generation_modes():
    model = tiny_model()
    batch = batch_for(["image", "video"])
    del batch["decoder_input_ids"]
    with torch.no_grad():
        beam = model.generate(**batch, num_beams=3, max_new_tokens=6, no_repeat_ngram_size=2, length_penalty=0.5)
        sample = model.generate(**batch, do_sample=True, top_k=5, max_new_tokens=6)
        beam_cached = model.generate(**batch, num_beams=3, max_new_tokens=6, use_cache=False)
        beam_again = model.generate(**batch, num_beams=3, max_new_tokens=6)
    assert beam.shape[0] == 2 and sample.shape[0] == 2
    assert beam[:, 0].eq(0).all(), "generation starts from <s> (bos = 0)"
    assert torch.equal(beam_cached, beam_again)
    for row in beam.tolist():  # no repeated 2-gram
        grams = [tuple(row[i : i + 2]) for i in range(len(row) - 1) if 1 not in row[i : i + 2]]
        assert len(grams) == len(set(grams))


def test_eager_equals_sdpa():
    config = tiny_config()
    torch.manual_seed(0)
    eager = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    sdpa = UnivalForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    batch = batch_for(["image", "text", "audio"])
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**batch).logits, eager(**batch).logits, rtol=0, atol=1e-5)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny_model()
    batch = batch_for(["image", "video", "text"])
    labels = batch.pop("decoder_input_ids")
    labels = torch.cat([labels[:, 1:], torch.full((labels.shape[0], 1), 2)], dim=1)
    reference = copy.deepcopy(model)

    def grads(m):
        m.train()
        m.zero_grad()
        m(**batch, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    expected = grads(reference)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.model.encoder.layers)
    got = grads(model)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_training_steps_lower_the_loss():
    model = tiny_model()
    model.train()
    batch = batch_for(["image", "audio", "video", "text"])
    labels = batch.pop("decoder_input_ids")
    labels = torch.cat([labels[:, 1:], torch.full((labels.shape[0], 1), 2)], dim=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = model(**batch, labels=labels).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] * 0.85, losses


def test_label_smoothed_loss_matches_fairseq_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    labels = torch.tensor([[1, 4, -100], [6, 0, 2]])
    eps = 0.1
    log_probs = logits.log_softmax(-1)
    expected, count = 0.0, 0
    for b in range(2):
        for t in range(3):
            if labels[b, t] == -100:
                continue
            nll = -log_probs[b, t, labels[b, t]]
            smooth = -log_probs[b, t].sum()
            eps_i = eps / 6
            expected += (1 - eps - eps_i) * nll + eps_i * smooth
            count += 1
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, labels, eps), expected / count)
    torch.testing.assert_close(
        label_smoothed_cross_entropy(logits, labels, 0.0),
        torch.nn.functional.cross_entropy(logits.view(-1, 7), labels.view(-1), ignore_index=-100),
    )
    # num_items_in_batch turns the mean into sum / N (gradient accumulation, DDP).
    torch.testing.assert_close(label_smoothed_cross_entropy(logits, labels, eps, num_items_in_batch=10), expected / 10)
    weighted = label_smoothed_cross_entropy(logits, labels, eps, label_weights=torch.tensor([1.0, 0.0]))
    assert weighted < expected / count


def test_loss_without_logits_equals_the_full_loss_and_gradients():
    """`return_logits=False` projects only the supervised positions: same loss, same gradients."""
    model = tiny_model()
    model.train()
    batch = batch_for(["image", "audio", "text"])
    labels = torch.cat([batch.pop("decoder_input_ids")[:, 1:], torch.full((3, 1), 2)], dim=1)
    labels[0, 2:] = -100  # a short target beside longer ones, as in a multitask batch
    weights = torch.tensor([1.0, 0.3, 0.6])

    def loss_and_grads(**kwargs):
        model.zero_grad()
        torch.manual_seed(0)  # the audio tower's dropout
        out = model(**batch, labels=labels, label_weights=weights, num_items_in_batch=11, **kwargs)
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full, full_grads = loss_and_grads()
    lean, lean_grads = loss_and_grads(return_logits=False)
    assert lean.logits is None and full.logits.shape[:2] == labels.shape
    torch.testing.assert_close(lean.loss, full.loss, rtol=1e-6, atol=1e-6)
    assert full_grads.keys() == lean_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(lean_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_runs():
    model = tiny_model()
    batch = batch_for(["image", "audio", "text"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch).logits
    assert torch.isfinite(logits).all()
    with torch.no_grad():
        reference = model(**batch).logits
    assert (logits.float() - reference).abs().max() < 0.5


def test_sample_patch_num_only_in_training():
    model = tiny_model(sample_patch_num=2)
    batch = batch_for(["image", "image"])  # 64 px -> 2x2 = 4 patches
    with torch.no_grad():
        eval_out = model(**batch)
        model.train()
        train_out = model(**batch)
    text = batch["input_ids"].shape[1]
    assert eval_out.encoder_last_hidden_state.shape[1] == 4 + text
    assert train_out.encoder_last_hidden_state.shape[1] == 2 + text


def test_token_buckets_match_the_documented_values():
    rel = torch.tensor([0, 1, -1, 127, -127, 128, -128, 129, -129, 200, 500, 1023, -1023])
    buckets = token_relative_position_bucket(rel, 256, 1024).tolist()
    assert buckets == [255, 256, 254, 382, 128, 383, 127, 384, 126, 411, 467, 510, 0]


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"pixel_values": torch.zeros(1, 3, 64, 64, dtype=torch.long)}, TypeError, "pixel_values.*floating"),
        ({"pixel_values": torch.zeros(3, 64, 64)}, ValueError, "pixel_values.*shape"),
        ({"pixel_values": torch.zeros(1, 1, 64, 64)}, ValueError, "pixel_values.*3 channels"),
        ({"pixel_values_videos": torch.zeros(1, 8, 3, 32, 32)}, ValueError, "channels before frames"),
        ({"pixel_values_videos": torch.zeros(1, 3, 32, 32)}, ValueError, "pixel_values_videos.*shape"),
        ({"audio_values": torch.zeros(1, 9600, dtype=torch.int16)}, TypeError, "audio_values.*floating"),
        ({"audio_values": torch.zeros(1, 1, 9600)}, ValueError, "audio_values.*shape"),
        ({"input_ids": torch.zeros(1, 5)}, TypeError, "input_ids.*integer"),
        ({"input_ids": torch.zeros(5, dtype=torch.long)}, ValueError, "input_ids.*shape"),
        ({"input_ids": torch.zeros(1, 129, dtype=torch.long)}, ValueError, "max_source_positions"),
        ({"patch_masks": torch.tensor([True, False])}, ValueError, "patch_masks.*shape"),
        ({"patch_types": torch.tensor([1])}, ValueError, "patch_types. marks 0 sample.*image.*pixel_values"),
        ({"patch_types": torch.tensor([5])}, ValueError, "patch_types. values"),
        ({"decoder_input_ids": torch.zeros(1, 65, dtype=torch.long)}, ValueError, "max_target_positions"),
        ({"decoder_input_ids": torch.zeros(1, 4)}, ValueError, "decoder_input_ids.*integer"),
        ({"pixel_values": torch.zeros(1, 3, 1100, 64)}, ValueError, "image_bucket_size"),
    ],
)
def test_bad_input_is_named(model, change, error, message):
    batch = batch_for(["image"])
    if "input_ids" in change:
        batch.pop("attention_mask")
    batch.update(change)
    with pytest.raises(error, match=message):
        with torch.no_grad():
            model(**batch)


def test_missing_tower_is_named():
    model = tiny_model(video_config=None, audio_config=None)
    batch = batch_for(["audio"])
    with pytest.raises(ValueError, match="audio_values.*no audio tower"):
        model(**batch)
    batch = batch_for(["video"])
    with pytest.raises(ValueError, match="pixel_values_videos.*no video tower"):
        model(**batch)


def test_ambiguous_modalities_need_patch_types(model):
    batch = batch_for(["image", "audio"])
    batch.pop("patch_types")
    with pytest.raises(ValueError, match="patch_types"):
        model(**batch)


def test_generate_beyond_max_target_positions_is_named(model):
    batch = batch_for(["text"])
    del batch["decoder_input_ids"]
    with pytest.raises(ValueError, match="max_target_positions"):
        model.generate(**batch, max_new_tokens=100, min_new_tokens=100)


def test_answer_trie_restricts_generation_to_the_answer_set():
    from modeling_unival.constrained_decoding import AnswerTrie
    from transformers import LogitsProcessorList

    model = tiny_model()
    answers = [[117, 2], [4420, 2], [80, 3678, 2], [80, 1275, 6399, 2]]  # token ids, each ending with </s>
    trie = AnswerTrie(answers, eos_token_id=2)
    assert sorted(trie.next_tokens([])) == [80, 117, 4420]
    assert sorted(trie.next_tokens([80])) == [1275, 3678]
    assert trie.next_tokens([80, 3678]) == [2]
    assert trie.next_tokens([999]) == [2]
    batch = batch_for(["image", "audio", "text"])
    del batch["decoder_input_ids"]
    for kwargs in ({"num_beams": 1}, {"num_beams": 3}, {"do_sample": True, "top_k": 0}):
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=6, logits_processor=LogitsProcessorList([trie.logits_processor()]), **kwargs
            )
        for row in out[:, 1:].tolist():
            row = [t for t in row if t != 1]
            assert row in answers, (kwargs, row)
        with torch.no_grad():
            out_fn = model.generate(**batch, max_new_tokens=6, prefix_allowed_tokens_fn=trie.prefix_allowed_tokens_fn(), num_beams=1)
        assert all([t for t in row if t != 1] in answers for row in out_fn[:, 1:].tolist())
    with pytest.raises(ValueError, match="at least one answer"):
        AnswerTrie([])


def test_position_bias_folded_and_direct_forms_agree():
    from modeling_unival.modeling_unival import UnivalPositionBias

    config = tiny_config()
    torch.manual_seed(0)
    bias = UnivalPositionBias(config, config.decoder_attention_heads)
    queries, keys = torch.randn(2, 1, config.d_model), torch.randn(2, 40, config.d_model)  # 1 query: folded form
    folded = bias(queries, keys)
    many = bias(torch.cat([queries] * 20, dim=1), keys)[:, :, :1]  # 20 queries: direct form
    torch.testing.assert_close(folded, many, rtol=0, atol=1e-5)
    assert folded.shape == (2, config.decoder_attention_heads, 1, 40)


def test_entangled_positions_reach_the_hidden_states():
    """With `entangle_position_embedding` the same weights give other outputs: positions enter the embeddings."""
    plain = tiny_model()
    entangled = tiny_model(entangle_position_embedding=True)
    entangled.load_state_dict(plain.state_dict())
    batch = batch_for(["image", "text"])
    with torch.no_grad():
        a, b = plain(**batch), entangled(**batch)
    assert not torch.allclose(a.encoder_last_hidden_state, b.encoder_last_hidden_state, atol=1e-3)
    assert not torch.allclose(a.logits, b.logits, atol=1e-3)
