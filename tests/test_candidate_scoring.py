"""All-candidate scoring (the original's SNLI-VE / VQA "allcand" inference): against a per-candidate brute force on a
tiny model, against the original's numbers (generation.pt), and its input checks."""

import copy
import math

import pytest
import torch

from modeling_unival import score_candidates
from modeling_unival.generation_parity import (
    CANDIDATE_SCORES_ATOL_PER_TOKEN,
    case_encoder_inputs,
    left_padded,
    run_allcand_case,
)
from tiny import media, text_ids, tiny_model


BOS, PAD, EOS = 0, 1, 2
# Shared prefixes: [5] is complete and continues with 6 (so `</s>` and 6 compete), [8] continues only with 9.
CANDIDATES = [[5], [5, 6], [7], [8, 9], [5, 6, 10]]
# Ragged questions: `<s>` alone, short, long.
PROMPTS = [[BOS], [BOS, 40, 41], [BOS, 50, 51, 52, 53, 54]]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def _encoder_inputs(modality: str) -> dict:
    input_ids, attention_mask = text_ids([3, 6, 1], seed=1)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if modality == "image":
        inputs.update(pixel_values=media("image", 3, seed=2), patch_types=torch.zeros(3, dtype=torch.long))
    return inputs


def _allowed(prefix: list[int], candidates: list[list[int]]) -> set[int]:
    """The trie's children of `<s>` + prefix, with plain sets: next tokens of longer candidates, `</s>` if complete."""
    allowed = {c[len(prefix)] for c in candidates if c[: len(prefix)] == prefix and len(c) > len(prefix)}
    return allowed | ({EOS} if prefix in candidates else set())


@torch.no_grad()
def _brute_force(model, inputs: dict, prompts: list[list[int]], candidates: list[list[int]]) -> torch.Tensor:
    """One full forward per (row, candidate) on `<s>` + question + answer, row alone, no padding in the decoder."""
    scores = torch.zeros(len(prompts), len(candidates), dtype=torch.float64)
    for row, prompt in enumerate(prompts):
        row_inputs = {key: value[row : row + 1] for key, value in inputs.items()}
        for c, answer in enumerate(candidates):
            out = model(**row_inputs, decoder_input_ids=torch.tensor([prompt + answer]), use_cache=False)
            logits = out.decoder_features[0].double() @ model.lm_head.weight.double().T  # exact, in any dtype
            for k, target in enumerate(answer + [EOS]):
                allowed = sorted(_allowed(answer[:k], candidates))
                position = logits[len(prompt) - 1 + k].double()
                scores[row, c] += position[target] - torch.logsumexp(position[allowed], 0)
    return scores


@pytest.mark.parametrize("modality", ["text", "image"])
def test_scores_equal_a_per_candidate_brute_force(model, modality):
    inputs = _encoder_inputs(modality)
    prompt_ids, prompt_mask = left_padded(PROMPTS, PAD)
    scores = score_candidates(model, CANDIDATES, prompt_ids, prompt_mask, **inputs)
    reference = _brute_force(model, inputs, PROMPTS, CANDIDATES)
    assert scores.dtype == torch.float32 and scores.shape == (3, len(CANDIDATES))
    assert torch.allclose(scores.double(), reference, atol=1e-5, rtol=0), (scores - reference).abs().max()
    assert (scores < 0).all()


def test_bf16_candidates_closer_than_bf16_spacing_are_told_apart():
    """A bf16 model's candidate logits are computed in float32 from its features. Candidates [5] and [7] differ
    only in one weight of their output rows, so their logits differ by far less than bf16's spacing (a bf16
    projection would round both to one value and score them equal); the scores' gap is that float32 difference."""
    model = tiny_model(seed=3).to(torch.bfloat16)
    inputs = {key: value[:1] for key, value in _encoder_inputs("image").items()}
    prompt = torch.tensor([[BOS]])
    with torch.no_grad():
        # The position that predicts the answer sees `<s>` only, so its features do not depend on rows 5 and 7.
        features = model(**inputs, decoder_input_ids=prompt).decoder_features[0, 0].double()
        row = model.lm_head.weight[5].clone()
        # The smallest change of the weight whose product with the features is smallest: the next bf16 value.
        column = int((features * row.double()).abs().masked_fill(row == 0, float("inf")).argmin())
        row[column] = torch.nextafter(row[column], row[column] * 2)
        model.lm_head.weight[7] = row
        gap = float((model.lm_head.weight[7].double() - model.lm_head.weight[5].double()) @ features)
        rounded = model.lm_head(features.to(torch.bfloat16))
    assert gap != 0 and rounded[5] == rounded[7], "the two logits should round to one bf16 value"
    scores = score_candidates(model, [[5], [7]], prompt, **inputs)[0]
    assert math.isclose(float(scores[1] - scores[0]), gap, rel_tol=1e-3, abs_tol=1e-7), (scores, gap)


@pytest.mark.parametrize("candidate_batch_size", [1, 2, 3, 4, 5, 100])
def test_candidate_batches_do_not_change_the_scores(model, candidate_batch_size):
    inputs = _encoder_inputs("image")
    prompt_ids, prompt_mask = left_padded(PROMPTS, PAD)
    everything = score_candidates(model, CANDIDATES, prompt_ids, prompt_mask, **inputs)
    chunked = score_candidates(
        model, CANDIDATES, prompt_ids, prompt_mask, candidate_batch_size=candidate_batch_size, **inputs
    )
    assert torch.allclose(chunked, everything, atol=1e-6, rtol=0), (chunked - everything).abs().max()


def test_encoder_outputs_method_and_default_mask_agree(model):
    inputs = _encoder_inputs("image")
    prompt_ids, prompt_mask = left_padded(PROMPTS, PAD)
    scores = score_candidates(model, CANDIDATES, prompt_ids, prompt_mask, **inputs)
    with torch.no_grad():
        encoded = model.get_encoder()(**inputs)
    from_outputs = score_candidates(model, CANDIDATES, prompt_ids, prompt_mask, encoder_outputs=encoded)
    from_method = model.score_candidates(CANDIDATES, prompt_ids, candidate_batch_size=2, **inputs)  # mask from pads
    assert torch.allclose(from_outputs, scores, atol=1e-6, rtol=0)
    assert torch.allclose(from_method, scores, atol=1e-6, rtol=0)


def test_a_lone_candidate_scores_zero(model):
    """One candidate: every position has a single allowed token, so the score is exactly 0."""
    inputs = _encoder_inputs("text")
    prompt_ids, prompt_mask = left_padded(PROMPTS, PAD)
    scores = score_candidates(model, [[5, 6]], prompt_ids, prompt_mask, **inputs)
    assert torch.equal(scores, torch.zeros(3, 1))


def test_the_processors_prev_output_batch_feeds_the_scorer_as_it_is(model):
    """VQA inference as a user writes it: the processor's left-padded decoder prompts, answers from the tokenizer."""
    from media_fixtures import make_image
    from processing import UnivalImageProcessor, UnivalProcessor

    processor = UnivalProcessor(image_processor=UnivalImageProcessor(size=128))
    batch = processor(
        task="vqa",
        question=["what color is the car", "is it red"],
        images=[make_image(90, 120, seed=3)] * 2,
        return_decoder_prompt=True,
        return_tensors="pt",
    )
    answers = [
        processor.tokenizer(" " + a, add_special_tokens=False)["input_ids"] for a in ("yes", "no", "two", "two people")
    ]
    scores = model.score_candidates(answers, **batch)
    encoder_inputs = {k: v for k, v in batch.items() if k not in ("decoder_input_ids", "decoder_attention_mask")}
    prompts = [ids[real.bool()].tolist() for ids, real in zip(batch["decoder_input_ids"], batch.decoder_attention_mask)]
    assert len(prompts[0]) != len(prompts[1])  # ragged: the second prompt is left-padded
    reference = _brute_force(model, encoder_inputs, prompts, answers)
    assert torch.allclose(scores.double(), reference, atol=1e-5, rtol=0), (scores - reference).abs().max()


# --------------------------------------------------------------------------------------------------------------------
# The original's numbers (generation.pt)
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def allcand_fixture(original_generation):
    model, generation, cases = original_generation
    allcand = {name: case for name, case in generation["cases"].items() if case["kind"] == "allcand"}
    return model, allcand, cases


def test_the_six_allcand_cases_of_the_original_reproduce(allcand_fixture):
    model, allcand, cases = allcand_fixture
    assert len(allcand) == 6
    failures = []
    for name, case in allcand.items():
        assert case["weights"] == "fixture"  # the model carries the fixture's weights unchanged
        ok, report = run_allcand_case(model, case, cases)
        if not ok:
            failures.append(f"{name}: {report}")
    assert not failures, "\n".join(failures)


def test_the_allcand_scores_are_compared_as_numbers(allcand_fixture):
    """The judge fails when a score moves past its tolerance or a prediction differs, batched or alone."""
    model, allcand, cases = allcand_fixture
    case = allcand["vqa_allcand/fixture/image_text"]
    inputs = case_encoder_inputs(case, cases)
    scores = score_candidates(model, case["answers"], *left_padded(case["decoder_prompts"], PAD), **inputs)
    tolerance = CANDIDATE_SCORES_ATOL_PER_TOKEN * (len(case["answers"][1]) + 1)
    assert math.isclose(scores[0, 1].item(), case["candidate_scores"][0, 1].item(), abs_tol=tolerance)
    for key, change in (
        ("candidate_scores", lambda t: t.index_put_((torch.tensor(0), torch.tensor(1)), t[0, 1] + 1.5 * tolerance)),
        ("candidate_scores_alone", lambda t: t.index_put_((torch.tensor(1), torch.tensor(3)), t[1, 3] - 1e-3)),
        ("predict", lambda p: [p[0], (p[1] + 1) % len(case["answers"])]),
        ("predict_alone", lambda p: [(p[0] + 1) % len(case["answers"]), p[1]]),
    ):
        broken = copy.deepcopy(case)
        broken[key] = change(broken[key])
        assert not run_allcand_case(model, broken, cases)[0], key


# --------------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------------
def _encoded(model, inputs):
    with torch.no_grad():
        return model.get_encoder()(**inputs)


# Each entry changes the valid call (candidates, prompts, mask, encoder inputs) into an invalid one.
INVALID_CALLS = {
    "no candidates": (lambda m, k: k.update(candidates=[]), ValueError, "empty"),
    "empty candidate": (lambda m, k: k.update(candidates=[[5], []]), ValueError, "candidate 1 has no tokens"),
    "id past the vocabulary": (lambda m, k: k.update(candidates=[[5], [59457]]), ValueError, "outside the vocabulary"),
    "negative id": (lambda m, k: k.update(candidates=[[-1]]), ValueError, "outside the vocabulary"),
    "eos in a candidate": (lambda m, k: k.update(candidates=[[5, EOS]]), ValueError, "contains `</s>`"),
    "text candidates": (lambda m, k: k.update(candidates="yes"), TypeError, "list of token-id lists"),
    "mask shape": (
        lambda m, k: k.update(decoder_attention_mask=torch.ones(3, 2, dtype=torch.long)), ValueError, "has shape"
    ),
    "1-d prompts": (lambda m, k: k.update(decoder_input_ids=torch.zeros(3, dtype=torch.long)), ValueError, "integer"),
    "float prompts": (lambda m, k: k.update(decoder_input_ids=torch.zeros(3, 6)), ValueError, "integer tensor"),
    "right-padded prompts": (
        lambda m, k: k.update(decoder_attention_mask=k["decoder_attention_mask"].flip(-1)), ValueError, "left-padded"
    ),
    "prompt without tokens": (
        lambda m, k: k.update(decoder_attention_mask=k["decoder_attention_mask"] * torch.tensor([[0], [1], [1]])),
        ValueError,
        "left-padded",
    ),
    "fewer prompts than rows": (
        lambda m, k: k.update(decoder_input_ids=k["decoder_input_ids"][:2], decoder_attention_mask=None),
        ValueError,
        "the encoder inputs have 3 rows",
    ),
    "candidate batch size 0": (lambda m, k: k.update(candidate_batch_size=0), ValueError, "positive integer"),
    "encoder outputs and inputs": (
        lambda m, k: k.update(encoder_outputs=_encoded(m, _encoder_inputs("text"))), ValueError, "not both"
    ),
    "no encoder input": (lambda m, k: [k.pop(key) for key in ("input_ids", "attention_mask")], ValueError, "encoder"),
    "encoder outputs as a tuple": (
        lambda m, k: [k.pop(key) for key in ("input_ids", "attention_mask")]
        and k.update(encoder_outputs=_encoded(m, _encoder_inputs("text")).to_tuple()),
        TypeError,
        "UnivalEncoderOutput",
    ),
}


@pytest.mark.parametrize("name", list(INVALID_CALLS))
def test_invalid_inputs_are_rejected(model, name):
    change, error, match = INVALID_CALLS[name]
    prompt_ids, prompt_mask = left_padded(PROMPTS, PAD)
    kwargs = dict(candidates=CANDIDATES, decoder_input_ids=prompt_ids, decoder_attention_mask=prompt_mask)
    kwargs.update(_encoder_inputs("text"))
    change(model, kwargs)
    with pytest.raises(error, match=match):
        score_candidates(model, **kwargs)
