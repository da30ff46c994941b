"""Tokenizer of UnIVAL: GPT-2 byte-level BPE with the fairseq (BART) id layout plus code and location tokens."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from .constants import (
    BIN_TOKEN_OFFSET,
    BIN_TOKEN_TEMPLATE,
    BOS_TOKEN,
    BOS_TOKEN_ID,
    CODE_TOKEN_OFFSET,
    CODE_TOKEN_TEMPLATE,
    DICT_SIZE,
    EOS_TOKEN,
    EOS_TOKEN_ID,
    MASK_TOKEN,
    MASK_TOKEN_ID,
    MAX_SOURCE_LENGTH,
    NUM_BINS,
    NUM_CODES,
    NUM_FAIRSEQ_SPECIALS,
    PAD_TOKEN,
    PAD_TOKEN_ID,
    UNK_TOKEN,
    UNK_TOKEN_ID,
    VOCAB_SIZE,
)


BPE_DATA_DIR = ("data", "bpe")  # inside the `processing` package
BPE_FILES = {"encoder": "encoder.json", "merges": "vocab.bpe", "dictionary": "dict.txt"}

VOCAB_FILES_NAMES = {"tokenizer_file": "tokenizer.json"}


def _location_token_regexes() -> tuple[str, str]:
    """(look-behind, look-ahead) regexes matching exactly the valid `<bin_i>` / `<code_i>` tokens."""
    digit = r"\d"
    alternatives = [f"<bin_{digit * k}>" for k in range(1, len(str(NUM_BINS - 1)) + 1)]
    alternatives += [f"<code_{digit * k}>" for k in range(1, len(str(NUM_CODES - 1)) + 1)]
    joined = "|".join(alternatives)
    return f"(?<={joined})", f"(?={joined})"


def _read_package_text(name: str) -> str:
    return resources.files(__package__).joinpath(*BPE_DATA_DIR, name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def load_unival_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Build the UnIVAL vocabulary (byte-level token string -> fairseq id) and the BPE merges from the packaged
    GPT-2 files (`encoder.json`, `vocab.bpe`) and fairseq dictionary (`dict.txt`).

    Layout: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3; line `i` of `dict.txt` (a GPT-2 id, or one of the three
    `madeupword000k` fillers) gets id `4 + i`; then `<mask>`=50264, `<code_0..8191>`=50265.., `<bin_0..999>`=58457..
    """
    encoder = json.loads(_read_package_text(BPE_FILES["encoder"]))
    gpt2_token_of_id = {gpt2_id: token for token, gpt2_id in encoder.items()}

    vocab = {BOS_TOKEN: BOS_TOKEN_ID, PAD_TOKEN: PAD_TOKEN_ID, EOS_TOKEN: EOS_TOKEN_ID, UNK_TOKEN: UNK_TOKEN_ID}
    lines = [line for line in _read_package_text(BPE_FILES["dictionary"]).splitlines() if line.strip()]
    if len(lines) != DICT_SIZE:
        raise ValueError(f"{BPE_FILES['dictionary']} has {len(lines)} entries, expected {DICT_SIZE}")
    for index, line in enumerate(lines):
        symbol = line.split()[0]
        token = gpt2_token_of_id[int(symbol)] if symbol.isdigit() else symbol
        if token in vocab:
            raise ValueError(f"duplicate vocabulary entry {token!r} in {BPE_FILES['dictionary']}")
        vocab[token] = NUM_FAIRSEQ_SPECIALS + index
    vocab[MASK_TOKEN] = MASK_TOKEN_ID
    for i in range(NUM_CODES):
        vocab[CODE_TOKEN_TEMPLATE.format(i)] = CODE_TOKEN_OFFSET + i
    for i in range(NUM_BINS):
        vocab[BIN_TOKEN_TEMPLATE.format(i)] = BIN_TOKEN_OFFSET + i
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"built a vocabulary of {len(vocab)} entries, expected {VOCAB_SIZE}")

    merges = []
    for line in _read_package_text(BPE_FILES["merges"]).splitlines():
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merges.append((left, right))
    return vocab, merges


class UnivalTokenizer(TokenizersBackend):
    r"""
    Tokenizer of UnIVAL (backed by 🤗 tokenizers): GPT-2 byte-level BPE whose ids are re-indexed through the fairseq
    dictionary of BART / OFA / UnIVAL, plus 8192 image-code tokens and 1000 location tokens. 59457 ids in all:

    | tokens | ids |
    |---|---|
    | `<s>`, `<pad>`, `</s>`, `<unk>` | 0, 1, 2, 3 |
    | GPT-2 BPE tokens (`dict.txt` line `i`) | `4 + i` (50261-50263: `madeupword0000..0002`) |
    | `<mask>` | 50264 |
    | `<code_0>` .. `<code_8191>` | 50265 .. 58456 |
    | `<bin_0>` .. `<bin_999>` | 58457 .. 59456 |

    Encoding a text gives `[0] + ids + [2]`. There is no lowercasing and no prefix space: the original prompts start
    with a space themselves (`" what does the image describe?"`). Code and location tokens are added tokens: they
    are matched anywhere in the text (no leading space needed: `"region:<bin_3>"` works) and decode back verbatim.
    Whitespace *between two* code / location tokens is dropped when encoding, because the original encodes the
    location string `"<bin_a> <bin_b> <bin_c> <bin_d>"` without BPE (4 tokens); so `decode(encode(x)) == x` holds for
    texts whose location tokens are written back to back (`" a dog <bin_1><bin_20> ..."`), and a spaced location
    string decodes without its inner spaces. The special tokens (`<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`) written
    in a text are matched as special tokens too: calling the tokenizer is the raw-token path, for strings of tokens.

    `encode_text` is the plain-text path: it encodes a text with no added-token matching at all, so a `<bin_5>`,
    `<code_3>` or `</s>` in it are the characters they are, BPE-encoded as the original's BPE did (calling the
    tokenizer with `split_special_tokens=True` only splits the special tokens, not the location and code tokens).
    `UnivalProcessor` encodes all user text (prompts, questions, captions, targets) this way; location tokens come
    only from what it builds from boxes (see `processing.prompts.TokenText`).

    The vocabulary is built at load time from the packaged `encoder.json`, `vocab.bpe` and `dict.txt`; a saved
    tokenizer (`save_pretrained`) is a regular `tokenizer.json` and reloads with `AutoTokenizer.from_pretrained`.

    Args:
        vocab (`dict[str, int]`, *optional*): byte-level token -> id. Defaults to the packaged UnIVAL vocabulary.
        merges (`list[tuple[str, str]]`, *optional*): BPE merges. Defaults to the packaged GPT-2 merges.
        model_max_length (`int`, *optional*, defaults to 1024): maximum number of tokens the model takes.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    model = BPE
    padding_side = "right"

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        merges: list[tuple[str, str]] | list[str] | None = None,
        errors: str = "replace",
        bos_token: str = BOS_TOKEN,
        eos_token: str = EOS_TOKEN,
        unk_token: str = UNK_TOKEN,
        pad_token: str = PAD_TOKEN,
        mask_token: str = MASK_TOKEN,
        model_max_length: int = MAX_SOURCE_LENGTH,
        **kwargs,
    ):
        if vocab is None or merges is None:
            default_vocab, default_merges = load_unival_vocab_and_merges()
            vocab = dict(default_vocab) if vocab is None else vocab
            merges = list(default_merges) if merges is None else merges
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]

        backend = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, fuse_unk=False))
        behind, ahead = _location_token_regexes()
        # Whitespace between two location / code tokens carries no token (see the class docstring).
        backend.normalizer = normalizers.Replace(Regex(behind + r"\s+" + ahead), "")
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        specials = [bos_token, pad_token, eos_token, unk_token, mask_token]
        backend.add_special_tokens([AddedToken(str(t), special=True, normalized=False) for t in specials])
        backend.add_tokens(
            [AddedToken(CODE_TOKEN_TEMPLATE.format(i), special=False, normalized=True) for i in range(NUM_CODES)]
            + [AddedToken(BIN_TOKEN_TEMPLATE.format(i), special=False, normalized=True) for i in range(NUM_BINS)]
        )
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A {eos_token}",
            pair=f"{bos_token} $A {eos_token} {eos_token} $B {eos_token}",
            special_tokens=[(str(bos_token), vocab[str(bos_token)]), (str(eos_token), vocab[str(eos_token)])],
        )
        self._tokenizer = backend

        kwargs.setdefault("clean_up_tokenization_spaces", False)
        kwargs.pop("add_prefix_space", None)
        kwargs.pop("post_processor", None)  # always the template above
        super().__init__(
            errors=errors,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            mask_token=mask_token,
            add_prefix_space=False,
            model_max_length=model_max_length,
            **kwargs,
        )

    # ---------------------------------------------------------------------------------------------------------------
    # UnIVAL helpers
    # ---------------------------------------------------------------------------------------------------------------
    @property
    def bin_token_offset(self) -> int:
        """Id of `<bin_0>`."""
        return self.convert_tokens_to_ids(BIN_TOKEN_TEMPLATE.format(0))

    @property
    def code_token_offset(self) -> int:
        """Id of `<code_0>`."""
        return self.convert_tokens_to_ids(CODE_TOKEN_TEMPLATE.format(0))

    def bin_token_id(self, index: int) -> int:
        """Id of `<bin_{index}>`."""
        if not 0 <= int(index) < NUM_BINS:
            raise ValueError(f"bin index must lie in [0, {NUM_BINS - 1}], got {index}")
        return self.bin_token_offset + int(index)

    def encode_text(self, text: str) -> list[int]:
        """Ids of `text` as plain text (no `<s>` / `</s>` added): byte-level BPE only, without matching the added
        tokens, so that control and location tokens written in user text stay text; `decode` gives `text` back."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        backend = self._tokenizer
        # The pre-tokenizer and the BPE model are what the full pipeline runs between the added-token split and the
        # post-processor; the normaliser only joins location tokens, which plain text has none of.
        pieces = backend.pre_tokenizer.pre_tokenize_str(text)
        return [token.id for piece, _ in pieces for token in backend.model.tokenize(piece)]

    def code_token_id(self, index: int) -> int:
        """Id of `<code_{index}>`."""
        if not 0 <= int(index) < NUM_CODES:
            raise ValueError(f"code index must lie in [0, {NUM_CODES - 1}], got {index}")
        return self.code_token_offset + int(index)


__all__ = ["UnivalTokenizer", "load_unival_vocab_and_merges"]
