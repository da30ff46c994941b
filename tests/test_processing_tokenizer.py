"""Tests of UnivalTokenizer: the reference token-id vectors, the id layout and save / load."""

import json

import pytest
from transformers import AutoTokenizer

import processing  # noqa: F401  (registers the Auto classes)
from processing.constants import (
    BIN_TOKEN_OFFSET,
    BOS_TOKEN_ID,
    CODE_TOKEN_OFFSET,
    EOS_TOKEN_ID,
    MASK_TOKEN_ID,
    PAD_TOKEN_ID,
    UNK_TOKEN_ID,
    VOCAB_SIZE,
)
from processing.tokenization_unival import UnivalTokenizer, load_unival_vocab_and_merges


# Reference section 4 (verified with the original BPE + dictionary).
REFERENCE_VECTORS = {
    " what does the image describe?": [0, 99, 473, 5, 2274, 6190, 116, 2],
    " what does the video describe?": [0, 99, 473, 5, 569, 6190, 116, 2],
    " what does the audio describe?": [0, 99, 473, 5, 6086, 6190, 116, 2],
    ' which region does the text " a man in a red shirt " describe?': [
        0, 61, 976, 473, 5, 2788, 22, 10, 313, 11, 10, 1275, 6399, 22, 6190, 116, 2,
    ],
    ' does the image describe " two dogs playing "?': [0, 473, 5, 2274, 6190, 22, 80, 3678, 816, 22, 116, 2],
    " what color is the car?": [0, 99, 3195, 16, 5, 512, 116, 2],
    "  what does the region describe? region:": [0, 1437, 99, 473, 5, 976, 6190, 116, 976, 35, 2],
}


@pytest.fixture(scope="module")
def tokenizer():
    return UnivalTokenizer()


@pytest.mark.parametrize("text", list(REFERENCE_VECTORS))
def test_reference_token_ids(tokenizer, text):
    assert tokenizer(text)["input_ids"] == REFERENCE_VECTORS[text]


@pytest.mark.parametrize("answer, token_id", [(" yes", 4420), (" no", 117), (" maybe", 2085)])
def test_answer_token_ids(tokenizer, answer, token_id):
    assert tokenizer(answer, add_special_tokens=False)["input_ids"] == [token_id]


def test_vocabulary_layout(tokenizer):
    assert tokenizer.vocab_size == VOCAB_SIZE == 59457
    assert len(tokenizer) == 59457
    assert len(tokenizer.get_vocab()) == 59457
    assert sorted(tokenizer.get_vocab().values()) == list(range(59457))
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        BOS_TOKEN_ID, PAD_TOKEN_ID, EOS_TOKEN_ID, UNK_TOKEN_ID,
    ) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == MASK_TOKEN_ID == 50264
    ids = tokenizer.convert_tokens_to_ids
    assert ids("<code_0>") == CODE_TOKEN_OFFSET == 50265
    assert ids("<code_8191>") == 58456
    assert ids("<bin_0>") == BIN_TOKEN_OFFSET == 58457
    assert ids("<bin_999>") == 59456
    assert [ids(f"madeupword000{i}") for i in range(3)] == [50261, 50262, 50263]
    assert tokenizer.bin_token_id(7) == 58464 and tokenizer.code_token_id(3) == 50268
    with pytest.raises(ValueError):
        tokenizer.bin_token_id(1000)
    with pytest.raises(ValueError):
        tokenizer.code_token_id(-1)


def test_ids_follow_dict_txt(tokenizer):
    """fairseq id = 4 + line index of the GPT-2 id in dict.txt."""
    from importlib import resources

    encoder = json.loads(resources.files("processing").joinpath("data", "bpe", "encoder.json").read_text("utf-8"))
    token_of = {v: k for k, v in encoder.items()}
    lines = resources.files("processing").joinpath("data", "bpe", "dict.txt").read_text("utf-8").splitlines()
    for index in (0, 1, 2, 100, 5000, 50256):
        gpt2_id = int(lines[index].split()[0])
        assert tokenizer.convert_tokens_to_ids(token_of[gpt2_id]) == 4 + index
    vocab, merges = load_unival_vocab_and_merges()
    assert len(vocab) == 59457 and len(merges) == 50000


@pytest.mark.parametrize(
    "text",
    [
        " a dog <bin_1><bin_20> ...",
        "  what does the region describe? region:<bin_12><bin_0><bin_999><bin_500>",
        " image codes <code_0><code_8191> and more",
        " Héllo wörld — 日本語 \t tabs\nnew line",
        "<bin_3> starts and ends with a bin<bin_4>",
        " What Does The Image Describe?",
    ],
)
def test_decode_encode_round_trip(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids[1:-1]) == text


def test_mask_is_a_special_token(tokenizer):
    ids = tokenizer(" a <mask> token")["input_ids"]
    assert MASK_TOKEN_ID in ids
    assert tokenizer.decode(ids[1:-1]) == " a <mask> token"
    assert tokenizer.decode(ids, skip_special_tokens=True) == " a  token"


def test_location_tokens_are_added_tokens(tokenizer):
    # matched without a leading space, one token each
    ids = tokenizer(" region:<bin_3>x", add_special_tokens=False)["input_ids"]
    assert BIN_TOKEN_OFFSET + 3 in ids
    assert tokenizer("<bin_3>", add_special_tokens=False)["input_ids"] == [BIN_TOKEN_OFFSET + 3]
    # the original's spaced location string is exactly 4 tokens (it was encoded without BPE)
    spaced = tokenizer("<bin_1> <bin_2> <bin_3> <bin_4>", add_special_tokens=False)["input_ids"]
    assert spaced == [BIN_TOKEN_OFFSET + i for i in (1, 2, 3, 4)]
    # a space between text and a location token is a token of its own (no whitespace is dropped there)
    assert tokenizer(" dog <bin_1>", add_special_tokens=False)["input_ids"] == [2335, 1437, BIN_TOKEN_OFFSET + 1]
    # out-of-range "bins" are plain text
    assert BIN_TOKEN_OFFSET + 1000 not in tokenizer("<bin_1000>", add_special_tokens=False)["input_ids"]


def test_no_lowercasing(tokenizer):
    assert tokenizer(" What")["input_ids"] != tokenizer(" what")["input_ids"]


def test_batch_right_padding(tokenizer):
    batch = tokenizer([" a", " what color is the car?"], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist()[0] == [0, 10, 2, 1, 1, 1, 1, 1]
    assert batch["attention_mask"].tolist()[0] == [1, 1, 1, 0, 0, 0, 0, 0]


def test_save_and_auto_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "UnivalTokenizer"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded) is UnivalTokenizer
    for text in list(REFERENCE_VECTORS) + [" a dog <bin_1><bin_20> ...", "<bin_1> <bin_2> <bin_3> <bin_4>"]:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(reloaded) == 59457
    assert reloaded.decode(reloaded(" a dog <bin_1><bin_20> ...")["input_ids"], skip_special_tokens=True) == (
        " a dog <bin_1><bin_20> ..."
    )
