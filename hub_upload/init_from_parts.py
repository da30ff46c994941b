"""Write a UnIVAL model initialised from BART and pretrained backbones, as the original's training starts.

    python -m hub_upload.init_from_parts --preset unival-base-image --out unival-s1-init \\
        --text bart.base/model.pt --image resnet101_a1h-36d3f2aa.pth
    python -m hub_upload.init_from_parts --preset unival-base --out unival-init \\
        --text facebook/bart-base --image resnet101_a1h-36d3f2aa.pth \\
        --video resnext-101-kinetics.pth --audio Cnn14_mAP_0.431.pth

The folder holds the model (`model.safetensors`, `config.json` and its code), the preset's processor, the original's
captioning generation settings, and `init_report.json`: for every part, the tensors loaded, the tensors initialised
(and by which rule) and the source keys dropped (and why). The rules are `modeling_unival.conversion.parts`'s; a
training recipe does the same with `model: {preset: ..., init: {text: ..., image: ...}}`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.configuration_unival import PRESETS
from modeling_unival.conversion import UnsafeCheckpointError, init_from_parts
from modeling_unival.conversion.parts import AUDIO_FRONT_ENDS
from modeling_unival.presets import preset_processor
from processing.tasks import generation_config

from .convert import check_out_dir


REPORT_FILE = "init_report.json"


def build_initialised_model(preset: str, seed: int = 0, **sources):
    """A model of `preset` (weights drawn with `seed`) with the parts in `sources` (`text=`, `image=`, `video=`,
    `audio=`, `audio_front_end=`) loaded by `init_from_parts`; returns `(model, report)`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UnivalForConditionalGeneration(UnivalConfig.from_preset(preset))
    report = init_from_parts(model, seed=seed, **sources)
    model.generation_config = generation_config("caption")
    return model, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="unival-base", choices=sorted(PRESETS),
                        help="the architecture (unival-base-image: text and image only, as pretraining stage 1)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist, or be empty)")
    parser.add_argument("--text", help="BART: bart.base/model.pt (fairseq), a transformers BART folder or a hub id")
    parser.add_argument("--image", help="a timm / torchvision ResNet state dict (resnet101_a1h-36d3f2aa.pth)")
    parser.add_argument("--video", help="the Kinetics 3D ResNeXt checkpoint (resnext-101-kinetics.pth)")
    parser.add_argument("--audio", help="a PANN checkpoint (Cnn14_mAP_0.431.pth)")
    parser.add_argument("--audio-front-end", choices=AUDIO_FRONT_ENDS, default="model",
                        help="model: keep the model's 48 kHz STFT / mel front end; file: the PANN file's (as the "
                             "original's non-strict load)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random initialisation and the new embedding rows")
    args = parser.parse_args(argv)
    sources = {part: getattr(args, part) for part in ("text", "image", "video", "audio") if getattr(args, part)}
    if not sources:
        parser.error("give at least one of --text, --image, --video, --audio")
    try:
        check_out_dir(args.out)
        if args.out.is_dir() and any(args.out.iterdir()):
            raise ValueError(f"--out {args.out} exists and is not empty")
        model, report = build_initialised_model(args.preset, args.seed, audio_front_end=args.audio_front_end,
                                                **sources)
    except (FileNotFoundError, ValueError, OSError, UnsafeCheckpointError) as error:
        print(f"[init] error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    preset_processor(args.preset).save_pretrained(args.out)
    report.save(args.out / REPORT_FILE)
    print(f"[init] wrote {args.out} (report: {args.out / REPORT_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
