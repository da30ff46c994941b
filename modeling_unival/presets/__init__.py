"""Preset folders: a randomly initialised UnIVAL of a named preset, ready for `from_pretrained`.

    python -m modeling_unival.presets unival-base [--out DIR] [--seed N]

or, from Python, `modeling_unival.save_preset("unival-base", "unival-base")`. The folder (`DIR`, by default the
preset's name) holds the model (`config.json`, `model.safetensors` and its code), its `generation_config.json` (the
original's captioning settings, `processing.tasks.generation_config("caption")`) and the processor with its
tokenizer, so that afterwards

    import modeling_unival, processing
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained("unival-base")
    processor = AutoProcessor.from_pretrained("unival-base")

work from that folder. The presets are architectures (`UnivalConfig.from_preset`), with random weights: a start for
training, or a stand-in for tests and demos. Released weights come from `python -m hub_upload.convert`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..configuration_unival import UnivalConfig
from ..modeling_unival import UnivalForConditionalGeneration


# Processor settings per preset (`UnivalProcessor` defaults where absent). The tiny model's position grid holds
# 16 x 16 patches, so its inputs are smaller than the released model's: 128 px images, 8 frames of 64 px, 1 s of audio
# (the sizes the tests use).
PRESET_PROCESSING = {
    "unival-tiny": {
        "image_processor": {"size": 128},
        "video_processor": {"num_frames": 8, "crop_size": 64},
        "feature_extractor": {"max_length": 48000},
    },
}


def preset_processor(name: str):
    """The `UnivalProcessor` of preset `name`."""
    # Imported here: `processing` imports `modeling_unival.configuration_unival`, so a module-level import would
    # make the two packages import each other.
    from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor

    settings = PRESET_PROCESSING.get(name, {})
    return UnivalProcessor(
        image_processor=UnivalImageProcessor(**settings.get("image_processor", {})),
        video_processor=UnivalVideoProcessor(**settings.get("video_processor", {})),
        feature_extractor=UnivalFeatureExtractor(**settings.get("feature_extractor", {})),
    )


def save_preset(name: str, out: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Writes a randomly initialised model of preset `name` (weights drawn with `seed`), its captioning generation
    config and its processor to the folder `out` (by default `name`); returns the folder."""
    from processing.tasks import generation_config  # local import, see `preset_processor`

    config = UnivalConfig.from_preset(name)  # raises on an unknown name, with the valid ones
    processor = preset_processor(name)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = UnivalForConditionalGeneration(config)
    model.generation_config = generation_config("caption")
    folder = Path(name if out is None else out)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


__all__ = ["PRESET_PROCESSING", "preset_processor", "save_preset"]
