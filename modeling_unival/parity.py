"""Numerical parity with the original UnIVAL: `python -m modeling_unival.parity FOLDER`.

FOLDER is either
* a model fixture folder (`original_args.json`, `original_state_dict.pt`, `cases.pt`, as `shared/fixtures/parity`):
  the config is built from the arguments, the state dict converted with the port's key map, and every case is run
  teacher-forced (logits, decoder features, encoder output, encoder padding mask, encoder position embeddings) and
  through the 8-step greedy loop with `generate()`; or
* a tower fixture folder (`towers.pt`, as `shared/fixtures/towers`): every tower entry is rebuilt from its recipe
  and run on its cases.

One line per case with its largest differences (`diff/tolerance` where the tolerance exceeds 1e-4 because of the
towers' float32 round-off, see `run_case`), then `parity: K/N cases ok`; the exit status is non-zero unless
every case passes. Nothing here depends on the particular sizes or values of the shipped fixtures.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from .conversion import check_original_buffers, config_from_original_args, load_original_state_dict
from .ids import Modality
from .modeling_unival import UnivalForConditionalGeneration


MODEL_ATOL = 1e-4


def load_original_model(folder: Path) -> tuple[UnivalForConditionalGeneration, dict]:
    """Builds the port from a fixture folder's `original_args.json` and `original_state_dict.pt`."""
    meta = json.loads((folder / "original_args.json").read_text())
    state_dict = torch.load(folder / "original_state_dict.pt", map_location="cpu", weights_only=True)
    config = config_from_original_args(meta["args"], state_dict, meta.get("audio_cfg"))
    dictionary = meta.get("dictionary", {})
    for name in ("bos", "pad", "eos"):
        if name in dictionary:
            setattr(config, f"{name}_token_id", dictionary[name])
    config.decoder_start_token_id = config.bos_token_id
    model = UnivalForConditionalGeneration(config)
    load_original_state_dict(model, state_dict)
    model.eval().float()
    return model, {"buffers": check_original_buffers(state_dict, config), "config": config}


def original_inputs_to_port(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original forward's keyword arguments -> this port's.

    The original takes full-batch `patch_images` (a zero placeholder for video/audio samples) and routes by
    `patch_types`; the port takes each modality's tensor only for the samples of that modality.
    """
    ported = {"input_ids": inputs["src_tokens"], "decoder_input_ids": inputs["prev_output_tokens"]}
    patch_types = inputs.get("patch_types")
    if "patch_images" in inputs or "patch_videos" in inputs or "patch_audios" in inputs:
        if patch_types is None:
            patch_types = torch.full((inputs["src_tokens"].shape[0],), Modality.IMAGE, dtype=torch.long)
        for patch_type, original, ours in (
            (Modality.IMAGE, "patch_images", "pixel_values"),
            (Modality.VIDEO, "patch_videos", "pixel_values_videos"),
            (Modality.AUDIO, "patch_audios", "audio_values"),
        ):
            rows = patch_types == patch_type
            if rows.any():
                ported[ours] = inputs[original][rows].float()
        ported["patch_types"] = patch_types
        if "patch_masks" in inputs:
            ported["patch_masks"] = inputs["patch_masks"]
    return ported


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


def _teacher_forced(model: UnivalForConditionalGeneration, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    outputs = model(**inputs, use_cache=False)
    return {
        "logits": outputs.logits,
        "decoder_features": outputs.decoder_features,
        "encoder_out": outputs.encoder_last_hidden_state,
        "encoder_position_embeddings": outputs.encoder_position_embeddings,
        "encoder_padding_mask": outputs.encoder_attention_mask.eq(0),
    }


@torch.no_grad()
def run_case(
    model: UnivalForConditionalGeneration, case: dict, model_fp64: UnivalForConditionalGeneration | None = None
) -> tuple[bool, str]:
    """Runs one fixture case. Each output must be within `MODEL_ATOL` of the original's, plus twice the port's own
    float32 round-off for that output, measured against a float64 run of the same inputs (`model_fp64`).

    Why the allowance: the convolution towers accumulate float32 round-off (ResNet-50 on random weights moves
    the encoder output by ~2e-4 between float32 and float64), and the original's float32 numbers carry their
    own, independent round-off of the same size. Outputs that see no convolution have ~1e-6 of it, so the
    check stays at 1e-4 there; a real porting error is orders of magnitude larger than either.
    """
    inputs = original_inputs_to_port(case["inputs"])
    reference = dict(case["outputs"])
    reference["encoder_out"] = reference["encoder_out"].transpose(0, 1)
    ours = _teacher_forced(model, inputs)
    noise = {}
    if model_fp64 is not None:
        inputs64 = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
        exact = _teacher_forced(model_fp64, inputs64)
        noise = {name: _max_diff(ours[name], exact[name]) for name in ours if name != "encoder_padding_mask"}
    padding_ok = torch.equal(ours["encoder_padding_mask"], reference["encoder_padding_mask"].bool())
    ok = padding_ok
    details = []
    for name in ("logits", "decoder_features", "encoder_out", "encoder_position_embeddings"):
        diff = _max_diff(ours[name], reference[name])
        tolerance = MODEL_ATOL + 2 * noise.get(name, 0.0)
        ok = ok and diff <= tolerance
        details.append(f"{name}={diff:.1e}" + (f"/{tolerance:.1e}" if tolerance > MODEL_ATOL * 1.01 else ""))

    greedy_ok = True
    greedy_note = ""
    if "greedy_tokens" in case:
        reference_tokens = case["greedy_tokens"]
        steps = reference_tokens.shape[1] - 1
        generation_inputs = {k: v for k, v in inputs.items() if k != "decoder_input_ids"}
        generated = model.generate(
            **generation_inputs,
            max_new_tokens=steps,
            min_new_tokens=0,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
            pad_token_id=model.config.pad_token_id,
            decoder_start_token_id=reference_tokens[0, 0].item(),
            no_repeat_ngram_size=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
        greedy_ok = torch.equal(generated.sequences, reference_tokens)
        step_diff = 0.0
        if "greedy_step_logits" in case:
            step_logits = torch.stack(generated.logits, dim=1)
            step_diff = _max_diff(step_logits, case["greedy_step_logits"])
            greedy_ok = greedy_ok and step_diff <= MODEL_ATOL + 2 * noise.get("logits", 0.0)
        greedy_note = f" greedy={'ok' if torch.equal(generated.sequences, reference_tokens) else 'MISMATCH'} step_logits={step_diff:.1e}"
    ok = ok and greedy_ok
    detail = " ".join(details)
    return ok, f"{detail} padding_mask={'ok' if padding_ok else 'MISMATCH'}{greedy_note}"


def run_model_parity(folder: Path) -> tuple[int, int]:
    model, info = load_original_model(folder)
    for key, equal in info["buffers"].items():
        print(f"  buffer {key}: {'recomputed exactly' if equal else 'DIFFERS from the recomputed buckets'}")
    cases = torch.load(folder / "cases.pt", map_location="cpu", weights_only=True)
    model_fp64 = copy.deepcopy(model).double()
    passed = 0
    for name, case in cases.items():
        try:
            ok, detail = run_case(model, case, model_fp64)
        except Exception as error:  # report and go on: one broken case must not hide the others
            ok, detail = False, f"error: {type(error).__name__}: {error}"
        passed += ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return passed, len(cases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a parity fixture folder (cases.pt) or a tower fixture folder (towers.pt)")
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if (folder / "cases.pt").exists():
        passed, total = run_model_parity(folder)
    elif (folder / "towers.pt").exists():
        from .tower_parity import run_tower_parity

        passed, total = run_tower_parity(folder)
    else:
        print(f"{folder}: neither cases.pt (model fixtures) nor towers.pt (tower fixtures) found", file=sys.stderr)
        return 2
    print(f"parity: {passed}/{total} cases ok")
    return 0 if total and passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
