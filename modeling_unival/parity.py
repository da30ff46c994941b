"""Numerical parity with the original UnIVAL: `python -m modeling_unival.parity FOLDER`.

FOLDER is either
* a model fixture folder (`original_args.json`, `original_state_dict.pt`, `cases.pt`, as `shared/fixtures/parity`):
  the config is built from the arguments, the state dict converted with the port's key map, and every case is run
  teacher-forced and through the 8-step greedy loop with `generate()`; with a `generation.pt` beside them, the
  original's decoded outputs are reproduced too (`generation_parity`: beam / greedy / grounding / VQA prefix + trie
  through `generate()`, and the all-candidate scorers through `score_candidates`); or
* a tower fixture folder (`towers.pt`, as `shared/fixtures/towers`): every tower entry is rebuilt from its recipe
  and run on its cases (`tower_parity`).

Each folder's README states its tolerance, and that is what is applied. Model fixtures: the logits (teacher-forced
and at every greedy step) within `MODEL_ATOL` = 1e-4, rtol 0, the greedy tokens and the encoder padding mask
exactly; the other outputs (decoder features, encoder output, encoder position embeddings) are there "to localise
differences" and are printed, not judged. Tower fixtures: see `tower_parity.tower_tolerance`.

One line per case with its largest differences, then `parity: K/N cases ok`; the exit status is non-zero unless
every case passes. Nothing here depends on the particular sizes or values of the shipped fixtures. Decoded
outputs are judged by the rules of their README (tokens exactly, log-probs within 3e-4, sums within 2e-4 per
token).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .conversion import check_original_buffers, config_from_original_args, load_original_state_dict
from .conversion.keys import convert_original_key
from .ids import Modality
from .modeling_unival import UnivalForConditionalGeneration
from .tower_parity import run_tower_parity


# The model fixtures' logits tolerance (their README, "How to use them": atol about 1e-4, rtol 0).
MODEL_ATOL = 1e-4
# Outputs compared to localise a difference; the judged ones are the logits.
LOCALISING_OUTPUTS = ("decoder_features", "encoder_out", "encoder_position_embeddings")


def load_original_model(folder: Path) -> tuple[UnivalForConditionalGeneration, dict[str, bool]]:
    """The port built from a fixture folder's `original_args.json` and `original_state_dict.pt` (eval, float32),
    and the comparison of the stored bucket buffers with the recomputed ones (`check_original_buffers`)."""
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
    return model.eval().float(), check_original_buffers(state_dict, config)


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


def _greedy(model: UnivalForConditionalGeneration, inputs: dict[str, torch.Tensor], case: dict) -> tuple[bool, str]:
    """The README's greedy loop: from the reference's first token, as many arg-max tokens as the reference has after
    it, no stop at `</s>`, nothing masked. Tokens must be equal, and the logits of every step within `MODEL_ATOL`."""
    reference_tokens = case["greedy_tokens"]
    generated = model.generate(
        **{key: value for key, value in inputs.items() if key != "decoder_input_ids"},
        max_new_tokens=reference_tokens.shape[1] - 1,
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
    tokens_ok = torch.equal(generated.sequences, reference_tokens)
    step_diff = _max_diff(torch.stack(generated.logits, dim=1), case["greedy_step_logits"])
    detail = f"greedy={'ok' if tokens_ok else 'MISMATCH'} step_logits={step_diff:.1e}"
    return tokens_ok and step_diff <= MODEL_ATOL, detail


@torch.no_grad()
def run_case(model: UnivalForConditionalGeneration, case: dict) -> tuple[bool, str]:
    """Runs one fixture case (see the module docstring for what is judged). Returns (passed, report)."""
    inputs = original_inputs_to_port(case["inputs"])
    reference = dict(case["outputs"], encoder_out=case["outputs"]["encoder_out"].transpose(0, 1))  # time-major
    ours = _teacher_forced(model, inputs)
    logits_diff = _max_diff(ours["logits"], reference["logits"])
    padding_ok = torch.equal(ours["encoder_padding_mask"], reference["encoder_padding_mask"].bool())
    ok = logits_diff <= MODEL_ATOL and padding_ok
    localising = " ".join(f"{name}={_max_diff(ours[name], reference[name]):.1e}" for name in LOCALISING_OUTPUTS)
    detail = f"logits={logits_diff:.1e} padding_mask={'ok' if padding_ok else 'MISMATCH'}"
    if "greedy_tokens" in case:
        greedy_ok, greedy_detail = _greedy(model, inputs, case)
        ok, detail = ok and greedy_ok, f"{detail} {greedy_detail}"
    return ok, f"{detail} (localising: {localising})"


def run_model_parity(folder: Path) -> tuple[int, int]:
    model, buffers = load_original_model(folder)
    for key, equal in buffers.items():
        print(f"  buffer {key}: {'recomputed exactly' if equal else 'DIFFERS from the recomputed buckets'}")
    cases = torch.load(folder / "cases.pt", map_location="cpu", weights_only=True)
    passed = 0
    for name, case in cases.items():
        try:
            ok, detail = run_case(model, case)
        except Exception as error:  # report and go on: one broken case must not hide the others
            ok, detail = False, f"error: {type(error).__name__}: {error}"
        passed += ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    total = len(cases)
    if (folder / "generation.pt").exists():
        generation = torch.load(folder / "generation.pt", map_location="cpu", weights_only=True)
        generation_passed, generation_total = run_generation_parity(model, generation, cases)
        passed, total = passed + generation_passed, total + generation_total
    return passed, total


def _replaced_weights(model: UnivalForConditionalGeneration, weights: dict) -> dict[str, torch.Tensor]:
    """The port's tensors named (in the original's keys) by a `generation.pt` weights entry: {port key: value}."""
    parameters = dict(model.state_dict(keep_vars=True))
    replaced = {}
    for key, value in weights.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            port_key = convert_original_key(key)
            if port_key not in parameters:
                raise KeyError(f"weights entry {key!r} names no tensor of the port")
            replaced[port_key] = value.float()
    return replaced


def run_generation_parity(model: UnivalForConditionalGeneration, generation: dict, cases: dict) -> tuple[int, int]:
    """The decoded-output cases of `generation.pt` (see `generation_parity`), each under its weights: an entry
    other than `fixture` replaces some tensors of the fixture's model (`eos_boost`: the final decoder LayerNorm's
    bias), restored afterwards."""
    from .generation_parity import run_allcand_case, run_generator_case

    parameters = dict(model.state_dict(keep_vars=True))
    passed = total = 0
    for name, case in generation["cases"].items():
        replaced = _replaced_weights(model, generation["weights"][case["weights"]])
        kept = {key: parameters[key].detach().clone() for key in replaced}
        try:
            with torch.no_grad():
                for key, value in replaced.items():
                    parameters[key].copy_(value)
            if case["kind"] == "generate":
                ok, detail = run_generator_case(model, case, generation["settings"], cases)
            else:
                ok, detail = run_allcand_case(model, case, cases)
        except Exception as error:  # report and go on, as above
            ok, detail = False, f"error: {type(error).__name__}: {error}"
        finally:
            with torch.no_grad():
                for key, value in kept.items():
                    parameters[key].copy_(value)
        passed += ok
        total += 1
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return passed, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", type=Path, help="a parity fixture folder (cases.pt) or a tower fixture folder (towers.pt)"
    )
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if (folder / "cases.pt").exists():
        passed, total = run_model_parity(folder)
    elif (folder / "towers.pt").exists():
        passed, total = run_tower_parity(folder)
    else:
        print(f"{folder}: neither cases.pt (model fixtures) nor towers.pt (tower fixtures) found", file=sys.stderr)
        return 2
    print(f"parity: {passed}/{total} cases ok")
    return 0 if total and passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
