"""Ids shared by the model (`modeling_unival`) and the processor (`processing`): modalities and the vocabulary layout.

This file is the one definition of these values. `modeling_unival/ids.py` is a symbolic link to it, so that the
model's and the processor's code each import it relatively, and a checkpoint saved with its code
(`trust_remote_code=True`) carries one `ids.py` for both.
"""

from __future__ import annotations

from enum import IntEnum


class Modality(IntEnum):
    """Modality of a sample, as passed to the model in `patch_types`.

    `TEXT` (-1) marks a sample without any image, video or audio. The other values are the original UnIVAL
    `patch_types` ids.
    """

    TEXT = -1
    IMAGE = 0
    VIDEO = 1
    AUDIO = 2


#: Human-readable names of the media modalities (prompts and error messages).
MODALITY_NAMES = {Modality.IMAGE: "image", Modality.VIDEO: "video", Modality.AUDIO: "audio"}


# --------------------------------------------------------------------------------------------------------------------
# Vocabulary layout (fairseq dictionary of the original: 4 specials, then dict.txt, then <mask>, codes and bins).
# --------------------------------------------------------------------------------------------------------------------
BOS_TOKEN = "<s>"
PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
MASK_TOKEN = "<mask>"

BOS_TOKEN_ID = 0
PAD_TOKEN_ID = 1
EOS_TOKEN_ID = 2
UNK_TOKEN_ID = 3

#: Number of fairseq special symbols placed before the lines of `dict.txt`: fairseq id = 4 + line index.
NUM_FAIRSEQ_SPECIALS = 4
#: Number of lines of `dict.txt` (50,257 GPT-2 ids, then three `madeupword000k` fillers).
DICT_SIZE = 50260
MASK_TOKEN_ID = NUM_FAIRSEQ_SPECIALS + DICT_SIZE  # 50264

#: Image-generation codes `<code_0>` .. `<code_8191>`.
NUM_CODES = 8192
CODE_TOKEN_OFFSET = MASK_TOKEN_ID + 1  # 50265
CODE_TOKEN_TEMPLATE = "<code_{}>"

#: Location tokens `<bin_0>` .. `<bin_999>`.
NUM_BINS = 1000
BIN_TOKEN_OFFSET = CODE_TOKEN_OFFSET + NUM_CODES  # 58457
BIN_TOKEN_TEMPLATE = "<bin_{}>"

VOCAB_SIZE = BIN_TOKEN_OFFSET + NUM_BINS  # 59457
