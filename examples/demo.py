"""The package's main job on its embedded default, with nothing downloaded.

Until the synthetic-world pretraining lands, this builds a tiny *randomly initialised* UnIVAL with the shipped
tokenizer and processors, draws an image, a video and a sound of its own, and runs captioning, VQA and visual
grounding through `generate()`. The words are random (the weights are), but every step is the real one: files on
disk -> `UnivalProcessor` -> `UnivalForConditionalGeneration.generate` -> decoded text and pixel boxes; the model
is then saved and reloaded with `AutoModelForSeq2SeqLM`.

    python examples/demo.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from processing import UnivalFeatureExtractor, UnivalImageProcessor, UnivalProcessor, UnivalVideoProcessor
from processing.testing_utils import write_audio, write_video
from transformers import AutoModelForSeq2SeqLM


def draw_scene(path: Path) -> Image.Image:
    image = Image.new("RGB", (160, 120), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 70, 70), fill=(220, 30, 30))  # a red circle
    draw.rectangle((100, 60, 140, 100), fill=(30, 60, 220))  # a blue square
    image.save(path)
    return image


def moving_square(num_frames: int = 12) -> np.ndarray:
    frames = np.full((num_frames, 64, 96, 3), 235, dtype=np.uint8)
    for t in range(num_frames):
        x = 5 + 6 * t
        frames[t, 20:44, x : x + 24] = (30, 160, 60)
    return frames


def beeps(sampling_rate: int = 16000) -> np.ndarray:
    t = np.arange(int(0.2 * sampling_rate)) / sampling_rate
    high, low = 0.5 * np.sin(2 * np.pi * 1760 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    gap = np.zeros(int(0.1 * sampling_rate))
    return np.concatenate([high, gap, low, gap, low]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the media and the model")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="unival-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    print(f"[demo] writing an image, a video and a sound to {out}")
    image = draw_scene(out / "scene.png")
    video = write_video(out / "square.mp4", moving_square())
    audio = write_audio(out / "beeps.wav", beeps(), 16000)

    print("[demo] building a tiny random UnIVAL (all three towers) and its processor")
    model = UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny")).eval()
    processor = UnivalProcessor(
        image_processor=UnivalImageProcessor(size=128),
        video_processor=UnivalVideoProcessor(num_frames=8, crop_size=64),
        feature_extractor=UnivalFeatureExtractor(max_length=48000),
    )
    print(f"[demo] {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")

    jobs = [
        ("image captioning", dict(task="caption", images=str(out / "scene.png"))),
        ("VQA", dict(task="vqa", text="what color is the circle", images=str(out / "scene.png"))),
        ("video captioning", dict(task="video_caption", videos=video)),
        ("audio captioning", dict(task="audio_caption", audio=audio)),
    ]
    for name, kwargs in jobs:
        inputs = processor(return_tensors="pt", **kwargs)
        start = time.perf_counter()
        with torch.no_grad():
            generated = model.generate(**inputs, num_beams=3, max_new_tokens=12, no_repeat_ngram_size=3)
        text = processor.batch_decode(generated, skip_special_tokens=True)[0]
        print(f"[demo] {name:17s} -> {text!r} ({time.perf_counter() - start:.2f} s)")

    inputs = processor(task="visual_grounding", text="the red circle", images=image, return_tensors="pt",
                       return_image_sizes=True)
    sizes = inputs.pop("image_sizes")
    location_only = [[i] for i in range(model.config.vocab_size) if i < processor.tokenizer.convert_tokens_to_ids("<bin_0>")]
    with torch.no_grad():
        generated = model.generate(**inputs, num_beams=3, max_new_tokens=4, min_new_tokens=4, bad_words_ids=location_only)
    box = processor.post_process_grounding(generated, sizes)[0]["box"]
    print(f"[demo] visual grounding  -> 'the red circle' at {[round(v, 1) for v in box]} (pixels of the 160x120 image)")

    model.save_pretrained(out / "unival-tiny")
    processor.save_pretrained(out / "unival-tiny")
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(out / "unival-tiny").eval()
    inputs = processor(task="caption", images=image, return_tensors="pt")
    with torch.no_grad():
        same = torch.equal(model.generate(**inputs, max_new_tokens=8), reloaded.generate(**inputs, max_new_tokens=8))
    print(f"[demo] saved to {out / 'unival-tiny'}; reloaded with AutoModelForSeq2SeqLM: identical generation = {same}")
    print("[demo] the weights are random, so the words are too: training on the synthetic world comes next.")


if __name__ == "__main__":
    main()
