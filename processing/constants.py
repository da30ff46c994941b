"""Constants shared by the UnIVAL processing classes.

This module is the single place for normalisation constants, length limits and the default sizes of each modality.
Token ids, the vocabulary layout and the modality ids, which the model needs too, are defined in `ids.py` and
re-exported here.
"""

from __future__ import annotations


from .ids import (  # noqa: F401  (re-exported: the one definition is in ids.py)
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
    MODALITY_NAMES,
    NUM_BINS,
    NUM_CODES,
    NUM_FAIRSEQ_SPECIALS,
    PAD_TOKEN,
    PAD_TOKEN_ID,
    UNK_TOKEN,
    UNK_TOKEN_ID,
    VOCAB_SIZE,
    Modality,
)


#: Value of `labels` at positions that do not contribute to the loss.
LABEL_IGNORE_INDEX = -100

#: Maximum number of text tokens of the encoder / decoder (the original's position tables have 1024 usable rows).
MAX_SOURCE_LENGTH = 1024
MAX_TARGET_LENGTH = 1024

#: Word limits applied by `pre_caption` / `pre_question` (the original's `max_src_length` / `max_tgt_length`).
MAX_SOURCE_WORDS = 80
MAX_CAPTION_TARGET_WORDS = 20

# --------------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------------
#: Normalisation of images and video frames: mean = std = 0.5 maps [0, 1] to [-1, 1].
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
RESCALE_FACTOR = 1 / 255
#: Largest 8-bit and 16-bit pixel values. High-bit-depth pixels (uint16 arrays, 16-bit PNG / TIFF files) are brought to
#: 8 bits by scaling the full 16-bit range onto the 8-bit one (`round(v * 255 / 65535)`, i.e. `v / 257`).
UINT8_MAX = 255
UINT16_MAX = 65535

#: Default square input size of the image processor (caption / VQA / SNLI-VE).
DEFAULT_IMAGE_SIZE = 480
#: Image sizes used by the original per task (`patch_image_size`).
TASK_IMAGE_SIZES = {
    "caption": 480,
    "vqa": 480,
    "visual_entailment": 480,
    "visual_grounding": 512,
    "pretraining_stage1": 384,
}
#: Size the original divides box coordinates by before quantisation (RefCOCO and pretraining).
DEFAULT_MAX_IMAGE_SIZE = 512

# --------------------------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------------------------
DEFAULT_NUM_FRAMES = 16
VIDEO_QA_NUM_FRAMES = 8
DEFAULT_VIDEO_CROP_SIZE = 384

# --------------------------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------------------------
AUDIO_SAMPLING_RATE = 48000
#: 10 s at 48 kHz.
AUDIO_MAX_SAMPLES = 480000
#: Scale of the int16 round trip the original applies to every waveform.
INT16_MAX = 32767.0

# --------------------------------------------------------------------------------------------------------------------
# File types (used for clear error messages; decoding support is decided by the libraries themselves)
# --------------------------------------------------------------------------------------------------------------------
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"})

__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_MAX_SAMPLES",
    "AUDIO_SAMPLING_RATE",
    "BIN_TOKEN_OFFSET",
    "BIN_TOKEN_TEMPLATE",
    "BOS_TOKEN",
    "BOS_TOKEN_ID",
    "CODE_TOKEN_OFFSET",
    "CODE_TOKEN_TEMPLATE",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_MAX_IMAGE_SIZE",
    "DEFAULT_NUM_FRAMES",
    "DEFAULT_VIDEO_CROP_SIZE",
    "DICT_SIZE",
    "EOS_TOKEN",
    "EOS_TOKEN_ID",
    "IMAGE_EXTENSIONS",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "INT16_MAX",
    "LABEL_IGNORE_INDEX",
    "MASK_TOKEN",
    "MASK_TOKEN_ID",
    "MAX_CAPTION_TARGET_WORDS",
    "MAX_SOURCE_LENGTH",
    "MAX_SOURCE_WORDS",
    "MAX_TARGET_LENGTH",
    "MODALITY_NAMES",
    "Modality",
    "NUM_BINS",
    "NUM_CODES",
    "NUM_FAIRSEQ_SPECIALS",
    "PAD_TOKEN",
    "PAD_TOKEN_ID",
    "RESCALE_FACTOR",
    "TASK_IMAGE_SIZES",
    "UINT16_MAX",
    "UINT8_MAX",
    "UNK_TOKEN",
    "UNK_TOKEN_ID",
    "VIDEO_EXTENSIONS",
    "VIDEO_QA_NUM_FRAMES",
    "VOCAB_SIZE",
]
