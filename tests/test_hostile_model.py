"""Hostile inputs to the model's public entry points: each is refused with a typed error that names the argument
and its limit, not an error from inside torch or safetensors, nor silently NaN logits."""

import os

import pytest
import torch

from modeling_unival import UnivalForConditionalGeneration
from tiny import MODALITY_KEYS, media, text_ids, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def prompt():
    return text_ids([3, 5])


def _with_id(ids: torch.Tensor, value: int) -> torch.Tensor:
    ids = ids.clone()
    ids[-1, 1] = value
    return ids


# --- token ids ---------------------------------------------------------------------------------------------------


def _bad_ids(model):
    vocab_size = model.config.vocab_size
    return [vocab_size, vocab_size + 1000, -1, -7]


@pytest.mark.parametrize("argument", ["input_ids", "decoder_input_ids", "labels"])
@pytest.mark.parametrize("which", range(4))
def test_forward_refuses_out_of_vocabulary_ids(model, prompt, argument, which):
    input_ids, attention_mask = prompt
    bad = _bad_ids(model)[which]
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": input_ids}
    if argument == "labels":
        inputs["labels"] = input_ids
        del inputs["decoder_input_ids"]
    inputs[argument] = _with_id(inputs[argument], bad)
    with pytest.raises(ValueError, match=rf"`{argument}` holds token ids outside the vocabulary") as raised:
        model(**inputs)
    message = str(raised.value)
    assert f"1 of them, from {bad} to {bad}" in message
    assert f"config.vocab_size={model.config.vocab_size}" in message
    assert "1305" in message  # the hint: a converted checkpoint's vocabulary can be smaller than the processor's


def test_labels_may_hold_the_ignore_index_and_padding(model, prompt):
    input_ids, attention_mask = prompt
    labels = input_ids.masked_fill(attention_mask.eq(0), -100)
    labels[0, -1] = model.config.pad_token_id
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert torch.isfinite(loss)


def test_a_smaller_vocabulary_is_the_limit():
    small = tiny_model(vocab_size=1305)
    input_ids, attention_mask = text_ids([3], vocab=(1400, 2000))
    with pytest.raises(ValueError, match=r"`input_ids`.*config.vocab_size=1305"):
        small(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids[:, :1])


@pytest.mark.parametrize("num_beams", [1, 2])
@pytest.mark.parametrize("argument", ["input_ids", "decoder_input_ids"])
def test_generate_refuses_out_of_vocabulary_ids(model, prompt, argument, num_beams):
    input_ids, attention_mask = prompt
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    decoder_prompt = torch.zeros(2, 2, dtype=torch.long)
    decoder_prompt[:, 1] = 10
    inputs["decoder_input_ids"] = decoder_prompt
    inputs[argument] = _with_id(inputs[argument], model.config.vocab_size + 3)
    with pytest.raises(ValueError, match=rf"`{argument}` holds token ids outside the vocabulary"):
        model.generate(**inputs, num_beams=num_beams, max_new_tokens=3)


# --- generation settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_beams", [0, -1])
def test_generate_refuses_a_non_positive_num_beams(model, prompt, num_beams):
    input_ids, attention_mask = prompt
    with pytest.raises(ValueError, match=rf"`num_beams` must be a positive integer, got {num_beams}"):
        model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=num_beams, max_new_tokens=3)


def test_generate_refuses_zero_return_sequences(model, prompt):
    input_ids, attention_mask = prompt
    with pytest.raises(ValueError, match="`num_return_sequences` must be a positive integer, got 0"):
        model.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_beams=2, num_return_sequences=0, max_new_tokens=3
        )


def test_generate_refuses_more_return_sequences_than_beams(model, prompt):
    # `transformers` refuses this one itself, with a clear message; kept here so that it stays refused.
    input_ids, attention_mask = prompt
    with pytest.raises(ValueError, match=r"`num_return_sequences` \(3\).*`num_beams` \(2\)"):
        model.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_beams=2, num_return_sequences=3, max_new_tokens=3
        )


# --- media -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", list(MODALITY_KEYS))
@pytest.mark.parametrize("entry", ["forward", "generate"])
def test_non_finite_media_are_refused(model, prompt, kind, value, entry):
    input_ids, attention_mask = prompt
    argument = MODALITY_KEYS[kind][0]
    values = media(kind, 2)
    values.view(-1)[[5, 17]] = value
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, argument: values}
    with pytest.raises(ValueError, match=rf"`{argument}` holds 2 non-finite values \(NaN or inf\) out of"):
        if entry == "forward":
            model(**inputs, decoder_input_ids=input_ids)
        else:
            model.generate(**inputs, max_new_tokens=3)


@pytest.mark.parametrize("kind", list(MODALITY_KEYS))
def test_integer_media_are_refused(model, prompt, kind):
    input_ids, attention_mask = prompt
    argument = MODALITY_KEYS[kind][0]
    values = (media(kind, 2) * 100).to(torch.uint8 if kind != "audio" else torch.int16)
    with pytest.raises(TypeError, match=rf"`{argument}` must be a floating-point tensor \(torch.float32"):
        model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids, **{argument: values})


# --- checkpoint files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_weights_file_is_named(tmp_path, damage):
    tiny_model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    if damage == "truncated":
        with open(weights, "r+b") as handle:
            handle.truncate(os.path.getsize(weights) // 2)
    else:
        weights.write_bytes(b"not a safetensors file" if damage == "garbage" else b"")
    with pytest.raises(OSError, match="truncated or corrupt") as raised:
        UnivalForConditionalGeneration.from_pretrained(tmp_path)
    assert str(raised.value).startswith(f"{weights}: cannot read the weights")


def test_floating_point_labels_are_refused(model, prompt):
    input_ids, attention_mask = prompt
    with pytest.raises(TypeError, match=r"`labels` must be an integer tensor of token ids, got dtype torch.float32"):
        model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids.float())
