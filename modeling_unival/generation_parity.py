"""The original's decoded outputs of a parity fixture (`generation.pt`), reproduced by the port and judged by the
rules of the fixture's README ("What a port must compare").

Generator cases (`kind == "generate"`): a setting in the original's terms (beam, max_len_b, min_len, normalisation,
n-gram blocking, a forced question prefix, an answer trie), translated by `generate_kwargs` into `generate()`
arguments (the recipe of the task configs in `processing.tasks`). Judged per row: the number of finished
hypotheses and their order, every hypothesis's tokens exactly (final `</s>` included; where the fixture marks a row
`best` only the best one, `none` a near-tie that is reported, not judged), per-token log-probs within 3e-4 and the
score within 2e-4 per summed token (normalised scores: 2e-4); then each row alone. The original forces a VQA
question as a decoder prefix and scores it; `generate()` takes it as a left-padded decoder prompt. The answers are
the same (the question adds the same amount to every hypothesis of a row), and the question's own log-probs are
those of a teacher-forced pass over the prompt, which is how they are added here.

All-candidate cases (`kind == "allcand"`: VQA "allcand" and SNLI-VE): every row's `<s>` + question prompt, every
candidate answer scored by [`score_candidates`]. Judged: each candidate's score within 2e-4 per summed token
(2e-4 * (len(answer) + 1): its tokens and `</s>`), and the predicted candidate exactly, for the whole batch and for
each row scored alone (`candidate_scores_alone`, `predict_alone`; the row's trailing `<pad>` columns removed, as the
original's collater builds a batch of one).

The model must already carry the case's weights (`run_generation_parity` in `parity` swaps them in).
"""

from __future__ import annotations

import torch

from .candidate_scoring import score_candidates
from .constrained_decoding import AnswerTrie
from .modeling_unival import UnivalForConditionalGeneration


CANDIDATE_SCORES_ATOL_PER_TOKEN = 2e-4
POSITIONAL_ATOL = 3e-4
SCORE_ATOL_PER_TOKEN = 2e-4
_MODALITY_VALUES = ("pixel_values", "pixel_values_videos", "audio_values")  # hold only their modality's rows


def case_encoder_inputs(case: dict, cases: dict) -> dict[str, torch.Tensor]:
    """The encoder inputs of a case, in the port's names: only the `encoder_keys` tensors of its `inputs_from`."""
    from .parity import original_inputs_to_port  # parity imports this module

    stored = {key: value for key, value in cases[case["inputs_from"]]["inputs"].items() if key in case["encoder_keys"]}
    stored["prev_output_tokens"] = stored["src_tokens"][:, :1]  # the converter wants one; the decoder input is ours
    ported = original_inputs_to_port(stored)
    ported.pop("decoder_input_ids")
    return ported


def row_alone(inputs: dict[str, torch.Tensor], row: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """One row of encoder inputs as a batch of one, its trailing `<pad>` columns removed."""
    patch_types = inputs.get("patch_types")
    own = None  # the modality tensor holding this row (None for a text-only row)
    if patch_types is None:
        own = next((key for key in _MODALITY_VALUES if key in inputs), None)
    elif 0 <= int(patch_types[row]) < len(_MODALITY_VALUES):
        own = _MODALITY_VALUES[int(patch_types[row])]
    alone = {}
    for key, value in inputs.items():
        if key in _MODALITY_VALUES:
            if key == own:  # its index among the rows of its own modality
                index = int((patch_types[:row] == patch_types[row]).sum()) if patch_types is not None else row
                alone[key] = value[index : index + 1]
        else:
            alone[key] = value[row : row + 1]
    length = int(alone["input_ids"].ne(pad_token_id).sum())
    alone["input_ids"] = alone["input_ids"][:, :length]
    if "attention_mask" in alone:
        alone["attention_mask"] = alone["attention_mask"][:, :length]
    return alone


def left_padded(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Token lists -> left-padded ids and their mask (1 = real), as the processor lays out decoder prompts."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _judge_scores(ours: torch.Tensor, reference: torch.Tensor, predict: list[int], answers: list) -> tuple[bool, str]:
    """ours / reference (rows, candidates). Scores within the per-token tolerance, arg-max equal to `predict`."""
    tolerance = CANDIDATE_SCORES_ATOL_PER_TOKEN * torch.tensor([len(answer) + 1 for answer in answers])
    difference = (ours.float().cpu() - reference.float()).abs()
    scores_ok = bool((difference <= tolerance).all())
    predicted = ours.argmax(-1).tolist()
    ok = scores_ok and predicted == list(predict)
    report = (
        f"max |diff| {difference.max().item():.1e} ({(difference / tolerance).max().item():.2f} of tolerance), "
        f"predict {predicted}{'' if predicted == list(predict) else f' != {list(predict)}'}"
    )
    return ok, report


@torch.no_grad()
def run_allcand_case(model: UnivalForConditionalGeneration, case: dict, cases: dict) -> tuple[bool, str]:
    """One `kind == "allcand"` case, the whole batch and each row alone. `cases`: the fixture's `cases.pt`.
    Returns (passed, report)."""
    if case.get("kind") != "allcand":
        raise ValueError(f"not an all-candidate case: kind {case.get('kind')!r}")
    pad = model.config.pad_token_id
    inputs = case_encoder_inputs(case, cases)
    prompts, mask = left_padded(case["decoder_prompts"], pad)
    scores = score_candidates(model, case["answers"], prompts, mask, **inputs)
    ok, report = _judge_scores(scores, case["candidate_scores"], case["predict"], case["answers"])
    alone = torch.cat(
        [
            score_candidates(model, case["answers"], *left_padded([prompt], pad), **row_alone(inputs, row, pad))
            for row, prompt in enumerate(case["decoder_prompts"])
        ]
    )
    alone_ok, alone_report = _judge_scores(
        alone, case["candidate_scores_alone"], case["predict_alone"], case["answers"]
    )
    return ok and alone_ok, f"batch: {report} | alone: {alone_report}"


def generate_kwargs(setting: dict, prompt_width: int, pad_token_id: int) -> dict:
    """`generate()` arguments equal to a setting of the original's generator. `prompt_width`: the decoder prompt's
    width (1 for `<s>` alone)."""
    unsupported = {key: setting[key] for key in ("max_len_a", "unkpen") if setting.get(key, 0)}
    if unsupported or setting.get("temperature", 1.0) != 1.0:
        raise ValueError(f"no equivalent for these original settings: {unsupported or setting['temperature']}")
    # The original's max_len_b counts the tokens before the final `</s>`, a forced prefix included.
    question = prompt_width - 1 if setting.get("prefix") else 0
    beam_only = {"length_penalty": 0.0 if setting["unnormalized"] else setting["lenpen"], "early_stopping": True}
    return {
        "num_beams": setting["beam"],
        "num_return_sequences": setting["beam"],
        "do_sample": False,
        "max_new_tokens": setting["max_len_b"] + 1 - question,
        "force_final_eos": True,
        # Inside a forced prefix the original skips its min_len ban; after it the ban is over for min_len <= width.
        "min_new_tokens": 0 if setting.get("prefix") else setting["min_len"],
        "no_repeat_ngram_size": setting["no_repeat_ngram_size"],
        **(beam_only if setting["beam"] > 1 else {}),
        "suppress_tokens": [pad_token_id],
        "return_dict_in_generate": True,
        "output_scores": True,
        "output_logits": True,
    }


def _prompt_log_probs(model, inputs, prompt, mask) -> torch.Tensor:
    """Teacher-forced log-prob of each prompt token after `<s>`: (rows, width - 1), 0 on padding."""
    logits = model(**inputs, decoder_input_ids=prompt, decoder_attention_mask=mask, use_cache=False).logits
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, prompt[:, 1:, None]).squeeze(-1)
    return log_probs * mask[:, 1:]


def decode(model: UnivalForConditionalGeneration, case: dict, setting: dict, inputs: dict) -> list[list[dict]]:
    """The port's hypotheses for every row of `inputs`, in the fixture's format: per row, best first,
    `{"tokens", "score", "positional_scores"}` with the tokens after `<s>` up to and with `</s>` (VQA: the question
    tokens first)."""
    config = model.config
    batch = inputs["input_ids"].shape[0]
    prompts = [[config.decoder_start_token_id]] * batch
    if setting.get("prefix"):
        # The question of a row: its encoder tokens between `<s>` and the first `</s>` (the fixture's prefix_tokens).
        rows = inputs["input_ids"].tolist()
        prompts = [[config.decoder_start_token_id] + ids[1 : ids.index(config.eos_token_id)] for ids in rows]
    prompt, mask = left_padded(prompts, config.pad_token_id)
    kwargs = generate_kwargs(setting, prompt.shape[1], config.pad_token_id)
    processors = []
    if setting.get("trie"):
        trie = AnswerTrie([answer + [config.eos_token_id] for answer in case["answers"]], config.eos_token_id)
        processors.append(trie.logits_processor(prompt_length=prompt.shape[1]))
    out = model.generate(**inputs, decoder_input_ids=prompt, decoder_attention_mask=mask, logits_processor=processors, **kwargs)
    beams = kwargs["num_beams"]
    if beams > 1:
        positional = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
        final = out.sequences_scores
    else:
        steps = torch.stack(out.logits, 1).log_softmax(-1)
        positional = steps.gather(-1, out.sequences[:, prompt.shape[1] :, None]).squeeze(-1)
        final = None
    question = _prompt_log_probs(model, inputs, prompt, mask) if setting.get("prefix") else None
    rows = []
    for row in range(batch):
        hypotheses = []
        for flat in range(row * beams, (row + 1) * beams):
            if final is not None and not torch.isfinite(final[flat]):
                continue  # an empty slot: the row finished fewer than `num_beams` hypotheses
            row_question = None if question is None else question[row, prompt.shape[1] - len(prompts[row]) :]
            reported = None if final is None else final[flat].item()
            hypotheses.append(
                _hypothesis(out.sequences[flat, prompt.shape[1] :], positional[flat], reported, prompts[row],
                            row_question, setting, config.eos_token_id)
            )
        rows.append(hypotheses)
    return rows


def _hypothesis(generated, positional, reported, row_prompt, question, setting, eos_token_id) -> dict:
    """One returned sequence in the fixture's format. The score is the one `generate()` reports (`sequences_scores`;
    greedy reports none: the sum), plus the question's log-probs that the original adds by scoring its prefix."""
    generated = generated.tolist()
    length = generated.index(eos_token_id) + 1 if eos_token_id in generated else len(generated)
    scores = positional[:length].float()
    if reported is None:
        reported = scores.sum().item() / (length ** setting["lenpen"] if not setting["unnormalized"] else 1)
    if question is not None:
        if not setting["unnormalized"]:
            raise NotImplementedError("a normalised score with a forced prefix")
        scores = torch.cat([question, scores])
        reported += question.sum().item()
    return {"tokens": torch.tensor(row_prompt[1:] + generated[:length]), "score": reported, "positional_scores": scores}


def compare_row(ours: list[dict], reference: list[dict], strict: str, normalised: bool) -> tuple[bool, str]:
    """The README's rules for one row. Returns (ok, report)."""
    judged = {"all": len(reference), "best": 1, "none": 0}[strict]
    problems, worst_positional, worst_score = [], 0.0, 0.0
    if judged and len(ours) != len(reference):
        problems.append(f"{len(ours)} hypotheses, expected {len(reference)}")
    for k, (mine, theirs) in enumerate(zip(ours, reference)):
        if not torch.equal(mine["tokens"], theirs["tokens"]):
            if k < judged:
                problems.append(f"hypothesis {k} tokens differ")
            continue
        worst_positional = max(worst_positional, (mine["positional_scores"] - theirs["positional_scores"]).abs().max().item())
        tolerance = SCORE_ATOL_PER_TOKEN * (1 if normalised else len(theirs["tokens"]))
        worst_score = max(worst_score, abs(mine["score"] - theirs["score"]) / tolerance * SCORE_ATOL_PER_TOKEN)
        if k < judged and (worst_positional > POSITIONAL_ATOL or abs(mine["score"] - theirs["score"]) > tolerance):
            problems.append(f"hypothesis {k} scores off")
    report = f"positional {worst_positional:.1e}, score/token {worst_score:.1e}"
    return not problems, report + ("; " + ", ".join(problems) if problems else "")


@torch.no_grad()
def run_generator_case(model: UnivalForConditionalGeneration, case: dict, settings: dict, cases: dict) -> tuple[bool, str]:
    """One `kind == "generate"` case, the whole batch and each row alone. The model must carry the case's weights."""
    setting = settings[case["setting"]]
    inputs = case_encoder_inputs(case, cases)
    normalised = not setting["unnormalized"]
    ok, reports = True, []
    batch = decode(model, case, setting, inputs)
    for row, (ours, reference) in enumerate(zip(batch, case["hypotheses"])):
        row_ok, report = compare_row(ours, reference, case["strict"][row], normalised)
        alone = decode(model, case, setting, row_alone(inputs, row, model.config.pad_token_id))[0]
        alone_ok, alone_report = compare_row(alone, case["hypotheses_alone"][row], case["strict"][row], normalised)
        ok = ok and row_ok and alone_ok
        reports.append(f"row {row} [{case['strict'][row]}]: {report} | alone: {alone_report}")
    return ok, "; ".join(reports)


__all__ = ["case_encoder_inputs", "generate_kwargs", "left_padded", "row_alone", "run_allcand_case", "run_generator_case"]
