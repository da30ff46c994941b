"""UnIVAL's decoding: the original's beam search and ending, ragged decoder prompts, the answer trie."""

import copy

import pytest
import torch
from transformers import LogitsProcessorList

from modeling_unival import AnswerTrie
from modeling_unival.generation import UnivalFinalEosLogitsProcessor
from modeling_unival.parity import run_generation_parity
from tiny import media, text_ids, tiny_model


EOS, PAD = 2, 1


# --------------------------------------------------------------------------------------------------------------------
# The original's decoded outputs (generation.pt)
# --------------------------------------------------------------------------------------------------------------------
def test_every_decoded_case_of_the_original_reproduces(original_generation, capsys):
    """Beam, greedy, grounding, normalised and unnormalised, forced prefix + trie, natural and forced endings, and
    the all-candidate scorers: the original's outputs (the README's tolerances), batched and row by row, each under
    its weights (`eos_boost` replaces one tensor, restored afterwards)."""
    model, fixture, cases = original_generation
    before = {key: value.clone() for key, value in model.state_dict().items()}
    passed, total = run_generation_parity(model, fixture, cases)
    report = capsys.readouterr().out
    assert total == len(fixture["cases"]) > 0
    assert passed == total, "\n".join(line for line in report.splitlines() if not line.startswith("ok"))
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


# --------------------------------------------------------------------------------------------------------------------
# Ragged decoder prompts
# --------------------------------------------------------------------------------------------------------------------
def _left_padded(prompts):
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), PAD)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _questions(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [[0] + torch.randint(4, 400, (1 + (5 * k) % 11,), generator=generator).tolist() for k in range(n)]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def _decode(model, inputs, prompts, beams, trie, **extra):
    ids, mask = _left_padded(prompts)
    processors = LogitsProcessorList([trie.logits_processor(prompt_length=ids.shape[1])] if trie else [])
    out = model.generate(
        **inputs, decoder_input_ids=ids, decoder_attention_mask=mask, logits_processor=processors, num_beams=beams,
        num_return_sequences=beams, do_sample=False, max_new_tokens=5, force_final_eos=True, suppress_tokens=[PAD],
        return_dict_in_generate=True, output_scores=True, **extra,
    )
    if beams > 1:
        scores = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    else:
        scores = torch.stack(out.scores, 1).gather(-1, out.sequences[:, ids.shape[1] :, None]).squeeze(-1)
    generated = out.sequences[:, ids.shape[1] :]
    return generated, scores, ids.shape[1]


def _rows(inputs, row):
    return {key: value[row : row + 1] for key, value in inputs.items()}


@pytest.mark.parametrize("beams", [1, 5])
@pytest.mark.parametrize("with_trie", [False, True])
def test_twelve_questions_of_different_lengths_decode_as_alone(model, beams, with_trie):
    questions = _questions(12)
    assert len({len(q) for q in questions}) > 5
    ids, mask = text_ids([len(q) + 1 for q in questions], seed=4)
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": media("image", 12, seed=5)}
    trie = AnswerTrie([[9, 10, EOS], [9, EOS], [11, 12, 13, EOS], [14, EOS]], EOS) if with_trie else None
    with torch.no_grad():
        generated, scores, _ = _decode(model, inputs, questions, beams, trie)
        for row, question in enumerate(questions):
            alone, alone_scores, _ = _decode(model, _rows(inputs, row), [question], beams, trie)
            mine = generated[row * beams : (row + 1) * beams, : alone.shape[1]]
            assert torch.equal(mine, alone), row
            finite = torch.isfinite(alone_scores)
            torch.testing.assert_close(
                scores[row * beams : (row + 1) * beams, : alone.shape[1]][finite], alone_scores[finite], atol=1e-5, rtol=0
            )
    if with_trie:  # every returned answer is one of the trie's; four answers fill four of five beams, as the original
        answers = {(9, 10), (9,), (11, 12, 13), (14,)}
        finished = [sequence for sequence in generated.tolist() if EOS in sequence]
        assert len(finished) == 12 * min(beams, 4)
        for sequence in finished:
            assert tuple(sequence[: sequence.index(EOS)]) in answers


def test_a_mixed_image_and_video_batch_of_questions_decodes_as_alone(model):
    questions = _questions(4, seed=1)
    ids, mask = text_ids([len(q) + 1 for q in questions], seed=6)
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": media("image", 2, seed=7),
              "pixel_values_videos": media("video", 2, seed=8), "patch_types": torch.tensor([0, 1, 1, 0])}
    with torch.no_grad():
        generated, scores, _ = _decode(model, inputs, questions, 5, None)
        for row, question in enumerate(questions):
            single = {"input_ids": ids[row : row + 1], "attention_mask": mask[row : row + 1],
                      "patch_types": inputs["patch_types"][row : row + 1]}
            kind = int(inputs["patch_types"][row])
            key = ("pixel_values", "pixel_values_videos")[kind]
            index = int((inputs["patch_types"][:row] == kind).sum())
            single[key] = inputs[key][index : index + 1]
            alone, alone_scores, _ = _decode(model, single, [question], 5, None)
            assert torch.equal(generated[row * 5 : (row + 1) * 5, : alone.shape[1]], alone)
            torch.testing.assert_close(scores[row * 5 : (row + 1) * 5, : alone.shape[1]], alone_scores, atol=1e-5, rtol=0)


def test_left_padding_shifts_positions_not_logits(model):
    """Teacher-forced logits of a left-padded prompt at its real columns equal the prompt's logits alone."""
    prompts = [[0, 10, 11, 12], [0, 20, 21, 22, 23, 24, 25], [0]]
    ids, mask = text_ids([5, 7, 3], seed=1)
    pixels = media("image", 3)
    decoder, decoder_mask = _left_padded(prompts)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, decoder_input_ids=decoder,
                       decoder_attention_mask=decoder_mask).logits
        for row, prompt in enumerate(prompts):
            alone = model(input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1],
                          pixel_values=pixels[row : row + 1], decoder_input_ids=torch.tensor([prompt])).logits
            torch.testing.assert_close(logits[row, decoder.shape[1] - len(prompt) :], alone[0], atol=1e-5, rtol=0)
        # Without the mask the pads would be read as tokens at positions 0..: the logits differ.
        unmasked = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, decoder_input_ids=decoder).logits
        assert (unmasked[1:, -1] - logits[1:, -1]).abs().max() > 1e-3 or (unmasked[0, -1] - logits[0, -1]).abs().max() > 1e-3


def test_logits_to_keep_projects_only_the_last_positions(model):
    """`logits_to_keep=k` returns the last k columns of the full projection (what `generate()` asks for at prefill)."""
    ids, mask = text_ids([5, 7], seed=2)
    decoder, decoder_mask = _left_padded([[0, 10, 11, 12], [0, 20]])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder,
                     decoder_attention_mask=decoder_mask).logits
        for keep in (1, 2):
            kept = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder,
                         decoder_attention_mask=decoder_mask, logits_to_keep=keep).logits
            assert kept.shape[1] == keep
            torch.testing.assert_close(kept, full[:, -keep:], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------------------------
# The search and its processors
# --------------------------------------------------------------------------------------------------------------------
def test_final_eos_keeps_its_log_prob():
    processor = UnivalFinalEosLogitsProcessor(max_length=4, eos_token_id=EOS)
    scores = torch.log_softmax(torch.randn(2, 9), -1)
    assert torch.equal(processor(torch.zeros(2, 2, dtype=torch.long), scores), scores)  # not the last step
    forced = processor(torch.zeros(2, 3, dtype=torch.long), scores)
    assert torch.equal(forced[:, EOS], scores[:, EOS])
    assert torch.isinf(forced[:, :EOS]).all() and torch.isinf(forced[:, EOS + 1 :]).all()


def test_force_final_eos_counts_the_end_in_max_new_tokens(model):
    ids, mask = text_ids([6, 4], seed=2)
    with torch.no_grad():
        ended = model.generate(input_ids=ids, attention_mask=mask, num_beams=3, max_new_tokens=6, force_final_eos=True,
                               return_dict_in_generate=True, output_scores=True)
        free = model.generate(input_ids=ids, attention_mask=mask, num_beams=3, max_new_tokens=6)
    assert ended.sequences.shape[1] <= 7 and (ended.sequences == EOS).any(1).all()
    # The scored ending: the sequence score is the sum of the per-token scores, `</s>` included.
    steps = model.compute_transition_scores(ended.sequences, ended.scores, ended.beam_indices, normalize_logits=False)
    lengths = (ended.sequences[:, 1:] != PAD).sum(1)
    torch.testing.assert_close(ended.sequences_scores, steps.sum(1) / lengths, atol=1e-5, rtol=0)  # length_penalty 1
    assert free.shape[1] == 7  # transformers' semantics without it: six free tokens


def test_the_answer_trie_renormalises_and_matches_the_reference_sets():
    answers = [[9, 10, EOS], [9, EOS], [11, 12, 13, EOS], [14, EOS], [9, 10, 15, EOS]]
    trie = AnswerTrie(answers, EOS)
    processor = trie.logits_processor(prompt_length=2)
    histories = [[], [9], [9, 10], [11], [11, 12], [11, 12, 13], [14], [7], [9, 10, 15]]
    width = max(map(len, histories))
    input_ids = torch.full((len(histories), 2 + width), PAD)
    for row, history in enumerate(histories):
        input_ids[row, :2] = torch.tensor([0, 5])
        input_ids[row, 2 : 2 + len(history)] = torch.tensor(history, dtype=torch.long)
    # Rows of different answer lengths cannot share a call (the answer so far ends where the row does): one row each.
    logits = torch.randn(len(histories), 20)
    for row, history in enumerate(histories):
        out = processor(input_ids[row : row + 1, : 2 + len(history)], logits[row : row + 1])[0]
        allowed = sorted(trie.next_tokens(history))
        assert sorted(torch.isfinite(out).nonzero().flatten().tolist()) == allowed, history
        expected = torch.log_softmax(logits[row, allowed], -1)
        torch.testing.assert_close(out[allowed], expected)
    assert processor.renormalizes


def test_the_trie_runs_first_whatever_order_it_is_given_in(model):
    ids, mask = text_ids([5], seed=3)
    trie = AnswerTrie([[9, 10, EOS], [9, EOS]], EOS)
    config = model.generation_config
    processors = model._get_logits_processor(
        generation_config=type(config)(**{**config.to_dict(), "suppress_tokens": [PAD], "no_repeat_ngram_size": 2}),
        input_ids_seq_length=1, encoder_input_ids=ids, prefix_allowed_tokens_fn=None,
        logits_processor=LogitsProcessorList([trie.logits_processor()]), device="cpu", model_kwargs={},
    )
    assert getattr(processors[0], "renormalizes", False) and len(processors) >= 3


def test_sharing_the_cross_attention_cache_gives_the_reordered_result(model):
    """The search reorders only the self-attention cache: reordering the cross-attention one too changes nothing."""
    ids, mask = text_ids([6, 3, 8], seed=9)
    pixels = media("image", 3, seed=2)
    settings = dict(num_beams=4, num_return_sequences=4, max_new_tokens=6, no_repeat_ngram_size=2,
                    return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        shared = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, **settings)
        original = type(model)._reorder_cache_for_beams
        try:
            type(model)._reorder_cache_for_beams = lambda self, kwargs, idx: kwargs["cache"].reorder_cache(idx)
            full = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, **settings)
        finally:
            type(model)._reorder_cache_for_beams = original
    assert torch.equal(shared.sequences, full.sequences)
    torch.testing.assert_close(shared.sequences_scores, full.sequences_scores, atol=0, rtol=0)


def test_beam_sampling_is_refused(model):
    ids, mask = text_ids([4], seed=1)
    with pytest.raises(ValueError, match="beam sampling"):
        model.generate(input_ids=ids, attention_mask=mask, num_beams=2, do_sample=True, max_new_tokens=3)


def _static_and_eager(model, beams, ragged, **extra):
    """Eager dynamic-cache and static-cache generations of the same batch (3 captions, or 3 ragged questions)."""
    ids, mask = text_ids([5, 9, 3], seed=1)
    settings = dict(input_ids=ids, attention_mask=mask, pixel_values=media("image", 3), num_beams=beams,
                    num_return_sequences=beams, do_sample=False, max_new_tokens=5, return_dict_in_generate=True,
                    output_scores=True, force_final_eos=True, suppress_tokens=[PAD])
    if ragged:
        settings["decoder_input_ids"], settings["decoder_attention_mask"] = _left_padded(_questions(3))
    with torch.no_grad():
        eager = model.generate(**settings)
        static = model.generate(**settings, cache_implementation="static", **extra)
    return eager, static


def _assert_same_decoding(eager, static):
    assert torch.equal(eager.sequences, static.sequences)
    for ours, theirs in zip(eager.scores, static.scores):
        assert torch.equal(ours.isfinite(), theirs.isfinite())
        torch.testing.assert_close(ours[ours.isfinite()], theirs[ours.isfinite()], atol=1e-5, rtol=0)
    if getattr(eager, "sequences_scores", None) is not None:
        torch.testing.assert_close(eager.sequences_scores, static.sequences_scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("beams", [1, 4])
@pytest.mark.parametrize("ragged", [False, True], ids=["caption", "ragged-questions"])
def test_a_static_cache_gives_the_dynamic_cache_tokens_and_scores(model, beams, ragged):
    """The static cache's keys span its whole allocation: the unwritten columns are masked as the future, and
    positions and biases are those of the dynamic cache."""
    _assert_same_decoding(*_static_and_eager(model, beams, ragged))


@pytest.mark.parametrize("beams", [1, 4])
def test_compiled_generation_gives_the_eager_tokens_and_scores(beams):
    """`generate()`'s own compiled path (static cache + `compile_config`; on CPU it needs `_compile_all_devices`),
    for greedy and for UnIVAL's beam search, on ragged decoder prompts."""
    from transformers import CompileConfig

    torch._dynamo.reset()
    compile_config = CompileConfig(dynamic=None)
    compile_config._compile_all_devices = True
    model = tiny_model(seed=3)
    calls = []
    compiled_call = model.get_compiled_call

    def recording(config):
        calls.append(config)
        return compiled_call(config)

    model.get_compiled_call = recording
    _assert_same_decoding(*_static_and_eager(model, beams, ragged=True, compile_config=compile_config))
    assert calls, "the decoding steps did not run compiled"

def test_bf16_logits_decide_a_near_tie_as_float32_does():
    """Two logits 2^-6 apart near 10 round to the same bf16 value (spacing 0.0625), so a bf16 projection ties them and
    argmax takes the lower id; `vocabulary_logits` recomputes the top candidates in float32 and picks the larger."""
    from modeling_unival.modeling_unival import vocabulary_logits

    head = torch.nn.Linear(2, 8, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[3] = torch.tensor([10.0, 0.0])
        head.weight[5] = torch.tensor([10.0, 2.0**-6])  # both entries exact in bf16; the sum is not
    hidden = torch.ones(1, 1, 2, dtype=torch.bfloat16)
    with torch.no_grad():
        assert int(head(hidden).argmax(-1)) == 3
        logits = vocabulary_logits(head, hidden)
    assert logits.dtype == torch.float32 and int(logits.argmax(-1)) == 5
    assert float(logits[0, 0, 5]) == 10.0 + 2.0**-6


@pytest.mark.parametrize("precision", ["bf16 weights", "autocast"])
def test_reduced_precision_logits_are_float32_with_exact_top_candidates(precision):
    """A bf16 model (or a float32 one under bf16 autocast) returns float32 logits whose top `REFINED_TOP_LOGITS`
    per position are the float32 products of its decoder features and output weights, and whose other entries are
    the reduced-precision projection's; float32 without autocast is untouched."""
    from contextlib import nullcontext

    from modeling_unival.modeling_unival import REFINED_TOP_LOGITS

    model = tiny_model(seed=6)
    ids, mask = text_ids([6, 4], seed=3)
    decoder_ids = torch.tensor([[0, 9, 12, 7], [0, 15, 8, 11]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert plain.logits.dtype == torch.float32
    torch.testing.assert_close(plain.logits, model.lm_head(plain.decoder_features), atol=0, rtol=0)

    if precision == "bf16 weights":
        model, context = model.to(torch.bfloat16), nullcontext()
    else:
        context = torch.autocast("cpu", dtype=torch.bfloat16)
    with torch.no_grad(), context:
        out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        rounded = model.lm_head(out.decoder_features).float()
    assert out.logits.dtype == torch.float32 and rounded.dtype == torch.float32
    exact = out.decoder_features.float() @ model.lm_head.weight.float().T
    top = rounded.topk(REFINED_TOP_LOGITS, dim=-1).indices
    torch.testing.assert_close(out.logits.gather(-1, top), exact.gather(-1, top), atol=1e-5, rtol=1e-6)
    rest = torch.ones_like(out.logits, dtype=torch.bool).scatter(-1, top, False)
    assert torch.equal(out.logits[rest], rounded[rest])
    # The refinement changes values by no more than the rounding it undoes.
    assert float((out.logits - rounded).abs().max()) < 0.05


def test_towers_kept_in_float32_under_a_bf16_model():
    """The remedy the slow-convolution warning names: a bf16 model whose image tower runs in float32 (its features
    are cast to the transformer's dtype) follows the float32 model as closely as the all-bf16 one does."""
    fp32 = tiny_model(seed=5)
    mixed = tiny_model(seed=5).to(torch.bfloat16)
    mixed.model.encoder.image_tower.float()
    ids, mask = text_ids([6, 4], seed=2)
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values": media("image", 2, seed=1)}
    decoder_ids = torch.tensor([[0, 9, 12, 7], [0, 15, 8, 11]])
    with torch.no_grad():
        ours = mixed(**inputs, decoder_input_ids=decoder_ids).logits.log_softmax(-1)
        reference = fp32(**inputs, decoder_input_ids=decoder_ids).logits.log_softmax(-1)
        generated = mixed.generate(**inputs, num_beams=2, max_new_tokens=3)
    torch.testing.assert_close(ours, reference, atol=0.1, rtol=0.02)
    assert generated.shape[0] == 2


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
def test_emulated_reduced_precision_convolutions_are_named(kind, monkeypatch):
    """On a CPU without native bf16 convolutions (no AVX-512 / AMX) torch runs them on its reference kernel, about
    100x slower: a bf16 tower there warns once, naming the remedy; a float32 tower does not."""
    import modeling_unival.modeling_unival as modeling
    from tiny import MODALITY_KEYS
    from transformers.testing_utils import CaptureLogger

    monkeypatch.setattr(modeling, "_cpu_convolves_natively", lambda dtype: dtype == torch.float32)
    key, _ = MODALITY_KEYS[kind]
    ids, mask = text_ids([6, 4], seed=2)
    inputs = {"input_ids": ids, "attention_mask": mask, key: media(kind, 2, seed=1)}
    for model, warned in ((tiny_model(seed=5), False), (tiny_model(seed=5).to(torch.bfloat16), True)):
        modeling.logger.warning_once.cache_clear()
        with CaptureLogger(modeling.logger) as captured, torch.no_grad():
            model(**inputs, decoder_input_ids=torch.tensor([[0, 9], [0, 15]]))
        assert ("no native torch.bfloat16 convolutions" in captured.out) is warned, captured.out
    if warned:
        assert "_tower.float()" in captured.out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("model_class", ["UnivalForConditionalGeneration", "UnivalModel"])
def test_reduced_precision_loading_keeps_norms_and_the_front_end_in_float32(dtype, model_class, tmp_path):
    """`from_pretrained(dtype=bf16 / fp16)` keeps every LayerNorm and BatchNorm (weights, biases, running
    statistics) and the audio front end in float32, the rest in `dtype`; also for the base model loaded from a
    checkpoint of the generation model (keys without the `model.` prefix)."""
    import modeling_unival

    tiny_model(seed=5).save_pretrained(tmp_path)
    model = getattr(modeling_unival, model_class).from_pretrained(tmp_path, dtype=dtype)
    norms = (torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    kept, cast = set(), set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        module_name, _, tensor_name = name.rpartition(".")
        module = model.get_submodule(module_name)
        if tensor_name == "num_batches_tracked":
            assert tensor.dtype == torch.int64, name
        elif isinstance(module, norms) or ".front_end." in f".{name}":
            assert tensor.dtype == torch.float32, name
            kept.add(type(module).__name__)
        elif tensor.is_floating_point():
            assert tensor.dtype == dtype, name
            cast.add(type(module).__name__)
    assert {"UnivalLayerNorm", "BatchNorm2d", "BatchNorm3d", "UnivalLogMelSpectrogram"} <= kept
    assert {"Linear", "Conv2d", "Conv3d", "Embedding"} <= cast


def test_layer_norm_with_float32_parameters_normalises_in_float32():
    """A float32 `UnivalLayerNorm` under bf16 input: normalised in float32 with its exact parameters, returned in
    bf16. Its weight 1 + 2^-8 has no bf16 value (spacing 2^-7 at 1), so an all-bf16 norm gives another result."""
    from modeling_unival.modeling_unival import UnivalLayerNorm

    norm = UnivalLayerNorm(64)
    with torch.no_grad():
        norm.weight.fill_(1 + 2.0**-8)
        norm.bias.copy_(torch.linspace(-3, 3, 64) + 2.0**-9)
    hidden = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0)).mul(30).add(7).to(torch.bfloat16)
    out = norm(hidden)
    exact = torch.nn.functional.layer_norm(hidden.float(), (64,), norm.weight, norm.bias, norm.eps)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, exact.to(torch.bfloat16), atol=0, rtol=0)
    assert not torch.equal(out, copy.deepcopy(norm).to(torch.bfloat16)(hidden))


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
def test_bf16_generation_runs_end_to_end_with_float32_media(kind, tmp_path):
    """`from_pretrained(..., dtype=torch.bfloat16)`: float32 media from the processor are taken in the towers' dtype,
    the audio front end stays float32, and teacher-forced bf16 log-probs follow float32's to bf16 precision."""
    from tiny import MODALITY_KEYS

    fp32 = tiny_model(seed=5)
    fp32.save_pretrained(tmp_path)
    bf16 = type(fp32).from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert bf16.lm_head.weight.dtype == torch.bfloat16
    if kind == "audio":
        assert bf16.model.encoder.audio_tower.front_end.mel_filters.dtype == torch.float32
    ids, mask = text_ids([6, 4], seed=2)
    key, _ = MODALITY_KEYS[kind]
    inputs = {"input_ids": ids, "attention_mask": mask, key: media(kind, 2, seed=1)}
    with torch.no_grad():
        generated = bf16.generate(**inputs, num_beams=2, max_new_tokens=4, force_final_eos=True)
        assert generated.shape == (2, 5) and bool(generated[:, -1].eq(EOS).all())
        ours = bf16(**inputs, decoder_input_ids=generated).logits.float().log_softmax(-1)
        reference = fp32(**inputs, decoder_input_ids=generated).logits.log_softmax(-1)
    assert ours.dtype == torch.float32 and bool(ours.isfinite().all())
    torch.testing.assert_close(ours, reference, atol=0.1, rtol=0.02)
