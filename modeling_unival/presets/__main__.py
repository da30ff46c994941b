"""`python -m modeling_unival.presets NAME [--out DIR] [--seed N]`: see `modeling_unival.presets`."""

from __future__ import annotations

import argparse

from ..configuration_unival import PRESETS
from . import save_preset


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_unival.presets",
        description="Write a randomly initialised UnIVAL preset with its processor and generation config to a folder.",
    )
    parser.add_argument("preset", choices=sorted(PRESETS), help="the architecture (UnivalConfig.from_preset)")
    parser.add_argument("--out", help="the folder to write (default: the preset's name)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args(argv)
    folder = save_preset(args.preset, args.out, seed=args.seed)
    print(f"wrote {args.preset} (seed {args.seed}) to {folder}/: AutoModel.from_pretrained({str(folder)!r}) and "
          f"AutoProcessor.from_pretrained({str(folder)!r}) load it after `import modeling_unival, processing`")


if __name__ == "__main__":
    main()
