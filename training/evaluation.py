"""Generation-based evaluation of every task, with the task's standard metric and a prior baseline.

    python -m training.evaluation --model outputs/pretrain/video_audio/final --world outputs/synthetic-world

For each task the model predicts (generating with the task's inference settings, or the overrides given; the
label-set tasks by scoring each label) and is scored:

| task | metric |
| --- | --- |
| caption, video_caption, audio_caption, grounded_caption | CIDEr-D (and BLEU-4) |
| vqa, video_qa | VQA score (confidence of the predicted answer, as the original) or the 10-annotator accuracy |
| visual_grounding | accuracy at IoU >= 0.5 (boxes in pixels of the original image) |
| matching tasks, qa_matching, visual_entailment | accuracy (the best-scored label, as the original scores candidates) |

Two baselines, on the same examples:

* "prior": what ignores the media and the prompt, the most frequent training target (captions, answers, labels) or
  the mean training box;
* "shuffled media" (`shuffled_media=True`): the same model, each example given the media of another scene of its
  task. It keeps everything the model learnt from the prompts alone (which answers go with which question words,
  what a caption usually says), so the gap between the model's score and this one is what it reads from its input.
  A model can beat the prior by far and this baseline not at all.

Every task is batched (`--batch-size`; questions of different lengths together), a progress bar counts examples,
and with `--output scores.json` every prediction is written beside it (`scores.predictions.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList

from modeling_unival.constrained_decoding import AnswerTrie, UnivalLocationLogitsProcessor
from processing.constants import BIN_TOKEN_OFFSET
from processing.tasks import resolve_task
from training.metrics import classification_accuracy, cider_d, coco_bleu, grounding_accuracy, vqa_accuracy, vqa_score


#: The fields that carry an example's media (`image` decoded, video and audio read from `media_path`).
MEDIA_FIELDS = ("image", "media_path")


def with_shuffled_media(examples: list[dict]) -> list[dict]:
    """Copies of `examples` in which each example carries the media of another scene of the same task and modality:
    the one half way round their list, or the next after it whose `group_id` differs (the examples of one scene, e.g.
    its two VQA questions, are usually adjacent). An example with no other scene to take from keeps its own media.
    Everything else (prompt, target, reference box) stays the example's own."""
    positions = defaultdict(list)
    for index, example in enumerate(examples):
        positions[example["task"], example.get("modality")].append(index)
    shuffled = [dict(example) for example in examples]
    for indices in positions.values():
        n = len(indices)
        for k, index in enumerate(indices):
            group = examples[index].get("group_id")
            for step in range(n):
                position = indices[(k + n // 2 + step) % n]
                other_scene = examples[position].get("group_id") != group if group is not None else position != index
                if other_scene:
                    donor = examples[position]
                    shuffled[index].update({field: donor.get(field) for field in MEDIA_FIELDS})
                    break
    return shuffled


def _references(example: dict) -> list[str]:
    answers = [a for a in (example.get("answers") or []) if a]
    return answers or [example["target"]]


@torch.no_grad()
def generate_predictions(
    model,
    collator,
    examples: list[dict],
    batch_size: int = 16,
    generation_overrides: dict | None = None,
    answer_vocabulary: dict[str, list[str]] | None = None,
    constrain_grounding: bool = False,
    progress: bool = False,
    num_workers: int = 0,
) -> list[dict]:
    """Predicts task by task (`collator.iter_generation_batches`) and returns one record per example:
    `{"id", "task", "prediction", "reference"}`; grounding predictions are pixel boxes (or None).

    Tasks with a closed label set (entailment, the matching tasks) are scored as the original scores them: every label
    teacher-forced (`score_candidates`), the best one predicted. The others run `generate()` with the task's original
    settings; VQA with `answer_vocabulary` restricts its beam search to those answers (a trie), as the original's
    beam-search VQA evaluation. `progress` shows a progress bar in examples (with examples/s). `num_workers` > 0 loads
    and decodes the media of the next batches in that many DataLoader worker processes while the model runs."""
    processor = collator.processor
    tokenizer = processor.tokenizer
    model.eval()
    records = []
    bar = tqdm(total=len(examples), unit="ex", desc="evaluating", disable=not progress)
    for batch in collator.iter_generation_batches(examples, batch_size, num_workers=num_workers):
        bar.update(len(batch.references))
        spec = resolve_task(batch.task)
        if spec.labels:
            predictions = _best_labels(model, batch, spec.labels, tokenizer)
            records.extend(_records(batch, predictions))
            continue
        overrides = dict(generation_overrides or {})
        processors = []
        labels = (answer_vocabulary or {}).get(spec.name)
        if labels:
            # The original scores closed answer sets by restricting decoding to them (a trie over the answers).
            trie = AnswerTrie.from_answers(labels, tokenizer)
            processors.append(trie.logits_processor(prompt_length=batch.decoder_prompt_length))
            longest = max(len(tokenizer(" " + a, add_special_tokens=False)["input_ids"]) for a in labels) + 1
            overrides["max_new_tokens"] = max(overrides.get("max_new_tokens", spec.generation.get("max_new_tokens", 0)),
                                              longest)
            overrides["min_new_tokens"] = None
        if spec.output == "box" and constrain_grounding:
            processors.append(UnivalLocationLogitsProcessor(BIN_TOKEN_OFFSET, processor.num_bins))
        generated = model.generate(
            **batch.inputs,
            generation_config=spec.generation_config(**overrides),
            logits_processor=LogitsProcessorList(processors) if processors else None,
        )
        sizes = [ref.get("image_size") for ref in batch.references]
        predictions = processor.post_process_generation(
            generated, spec.name, image_sizes=sizes if spec.output == "box" else None,
            prompt_lengths=batch.decoder_prompt_length,
        )
        if spec.output == "box":
            predictions = [item["box"] for item in predictions]
        records.extend(_records(batch, predictions))
    bar.close()
    return records


def write_predictions(path: Path, records: Iterable[dict], **extra) -> None:
    """Appends one JSON line per record: `id`, `task`, `prediction`, the reference's `target` / `answers` /
    `box`, and `extra` (e.g. `run="shuffled_media"`)."""
    with Path(path).open("a") as stream:
        for record in records:
            reference = record["reference"]
            line = {"id": record["id"], "task": record["task"], "prediction": record["prediction"], **extra}
            line.update({key: reference[key] for key in ("target", "answers", "box") if reference.get(key) is not None})
            stream.write(json.dumps(line) + "\n")


def _records(batch, predictions: list) -> list[dict]:
    return [
        {"id": reference.get("id"), "task": batch.task, "prediction": prediction, "reference": reference}
        for prediction, reference in zip(predictions, batch.references)
    ]


def _best_labels(model, batch, labels, tokenizer) -> list[str]:
    """The label of the highest all-candidate score for each example of a generation batch (the plain layout
    scores after `<s>`, prev_output after `<s>` + the prompt)."""
    inputs = dict(batch.inputs)
    decoder_input_ids = inputs.pop("decoder_input_ids", None)
    decoder_attention_mask = inputs.pop("decoder_attention_mask", None)
    if decoder_input_ids is None:
        decoder_input_ids = torch.full((inputs["input_ids"].shape[0], 1), model.config.decoder_start_token_id)
    candidates = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
    scores = model.score_candidates(candidates, decoder_input_ids, decoder_attention_mask, **inputs)
    return [labels[index] for index in scores.argmax(-1).tolist()]


def score_task(task: str, predictions: list, references: list[dict]) -> dict[str, float]:
    """The task's metrics for predictions (strings, or boxes for grounding) against schema-style references."""
    metric = resolve_task(task).metric
    if metric == "cider":
        refs = [_references(r) for r in references]
        result = {"cider": cider_d(predictions, refs)["cider_d"] * 100}
        result["bleu4"] = coco_bleu(predictions, refs)["bleu_4"] * 100
        return result
    if metric == "vqa":
        if all(r.get("answer_confidences") for r in references):
            # {answer: confidence} references: the original UnIVAL/OFA VQA score.
            confidences = [dict(zip(r["answers"], r["answer_confidences"])) for r in references]
            return {"vqa_score": vqa_score(predictions, confidences, normalize=True)["vqa_score"] * 100}
        return {"vqa_accuracy": vqa_accuracy(predictions, [_references(r) for r in references])["vqa_accuracy"] * 100}
    if metric == "grounding":
        boxes = [p if p is not None else [0.0, 0.0, 0.0, 0.0] for p in predictions]
        result = grounding_accuracy(boxes, [r["box"] for r in references])
        return {"accuracy@0.5": result["accuracy"] * 100, "mean_iou": result["mean_iou"] * 100}
    return {"accuracy": classification_accuracy(predictions, [r["target"] for r in references])["accuracy"] * 100}


def prior_predictions(task: str, train_examples: Iterable[dict], references: list[dict]):
    """What a model that ignores the media would answer: the most frequent training target, or the mean box."""
    train = [e for e in train_examples if e["task"] == task]
    if not train:
        return None
    if resolve_task(task).output == "box":
        # The mean training box, in relative coordinates, mapped to each test image.
        rel = []
        for e in train:
            if e.get("image") is None or not e.get("boxes"):
                continue
            width, height = e["image"].size
            x0, y0, x1, y1 = e["boxes"][0]
            rel.append((x0 / width, y0 / height, x1 / width, y1 / height))
        if not rel:
            return None
        mean = [sum(v[i] for v in rel) / len(rel) for i in range(4)]
        out = []
        for r in references:
            height, width = r["image_size"]
            out.append([mean[0] * width, mean[1] * height, mean[2] * width, mean[3] * height])
        return out
    most_common = Counter(e["target"] for e in train).most_common(1)[0][0]
    return [most_common] * len(references)


def answer_vocabulary(train_examples: Iterable[dict]) -> dict[str, list[str]]:
    """`{task: sorted training answers}` of the answer tasks (VQA, video QA): the original's answer trie."""
    vocabulary = defaultdict(set)
    for e in train_examples:
        if resolve_task(e["task"]).output == "answer":
            vocabulary[e["task"]].update(a for a in (e.get("answers") or [e["target"]]) if a)
    return {task: sorted(answers) for task, answers in vocabulary.items()}


def _score_items(task: str, items: list[dict]) -> dict[str, float]:
    return score_task(task, [item["prediction"] for item in items], [item["reference"] for item in items])


def _by_task(records: Iterable[dict]) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for record in records:
        grouped[record["task"]].append(record)
    return grouped


def score_records(
    records: list[dict], train_examples: list[dict] | None = None, shuffled_records: list[dict] | None = None
) -> dict[str, dict[str, float]]:
    """Scores `generate_predictions` records task by task; with `train_examples`, also each task's prior baseline
    (keys prefixed `prior_`), and with `shuffled_records` (the records of `with_shuffled_media` examples) the
    shuffled-media baseline (keys prefixed `shuffled_`)."""
    shuffled_by_task = _by_task(shuffled_records or ())
    results = {}
    for task, items in sorted(_by_task(records).items()):
        scores = _score_items(task, items)
        scores["examples"] = len(items)
        if train_examples is not None:
            references = [item["reference"] for item in items]
            prior = prior_predictions(task, train_examples, references)
            if prior is not None:
                for name, value in score_task(task, prior, references).items():
                    scores[f"prior_{name}"] = value
        if task in shuffled_by_task:
            for name, value in _score_items(task, shuffled_by_task[task]).items():
                scores[f"shuffled_{name}"] = value
        results[task] = scores
    return results


def evaluate_examples(
    model,
    collator,
    examples: list[dict],
    train_examples: list[dict] | None = None,
    batch_size: int = 16,
    generation_overrides: dict | None = None,
    constrain_answers: bool = True,
    constrain_grounding: bool = False,
    shuffled_media: bool = False,
    predictions_file: Path | None = None,
    progress: bool = False,
    num_workers: int = 0,
) -> dict[str, dict[str, float]]:
    """Scores every task present in `examples`. With `train_examples`, also the prior baseline of each task
    (keys prefixed `prior_`), and VQA answers are restricted to the training answers (`constrain_answers`, the
    original's answer trie). With `shuffled_media`, also the model's scores with every example's media taken from
    another scene (`with_shuffled_media`; keys prefixed `shuffled_`): a second generation pass. `predictions_file`:
    a JSONL file (overwritten) with every prediction (`write_predictions`; `run` says which pass)."""
    vocabulary = answer_vocabulary(train_examples) if train_examples is not None and constrain_answers else None

    def generate(items):
        return generate_predictions(
            model, collator, items, batch_size, generation_overrides, vocabulary, constrain_grounding, progress,
            num_workers,
        )

    records = generate(examples)
    shuffled = generate(with_shuffled_media(examples)) if shuffled_media else None
    if predictions_file is not None:
        Path(predictions_file).write_text("")
        write_predictions(predictions_file, records, run="model")
        if shuffled is not None:
            write_predictions(predictions_file, shuffled, run="shuffled_media")
    return score_records(records, train_examples, shuffled)


def format_results(results: dict[str, dict[str, float]]) -> str:
    """One line per task: its main metric for the model, the prior and (when measured) the shuffled-media baseline."""
    lines = [f"{'task':22s} {'metric':14s} {'model':>8s} {'prior':>8s} {'shuffled':>8s} {'n':>5s}"]
    for task, scores in results.items():
        main = next(k for k in scores if not k.startswith(("prior_", "shuffled_")) and k != "examples")
        baselines = [scores.get(f"{kind}_{main}") for kind in ("prior", "shuffled")]
        cells = " ".join(" " * 8 if v is None else f"{v:8.1f}" for v in baselines)
        lines.append(f"{task:22s} {main:14s} {scores[main]:8.1f} {cells} {scores['examples']:5d}")
    return "\n".join(lines)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The paths of a command line, before anything is loaded: a missing model folder would otherwise be taken for
    a hub repository id by `from_pretrained`, and an unwritable `--output` found only after the whole evaluation."""
    from training.cli import require_model_dir

    try:
        model_dir = require_model_dir(args.model)
    except FileNotFoundError as error:
        parser.error(f"--model: {error}")
    if not (model_dir / "config.json").is_file():
        parser.error(f"--model: {args.model} has no config.json: not a folder written by `save_pretrained`")
    if not (Path(args.world) / "world.json").is_file():
        parser.error(f"--world: {args.world} is not a synthetic world (no world.json; write one with "
                     "`python -m training.data.synthetic`)")
    for flag, path in (("--output", args.output), ("--predictions", args.predictions)):
        if path is not None and (path.is_dir() or not path.parent.is_dir()):
            parser.error(f"{flag}: {path} " + ("is a directory" if path.is_dir() else "is in no existing directory"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved UnIVAL directory (model + processor)")
    parser.add_argument("--world", required=True, help="a synthetic world directory (training.data.synthetic)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-per-task", type=_positive_int, default=None)
    parser.add_argument("--batch-size", type=_positive_int, default=16)
    parser.add_argument("--num-beams", type=_positive_int, default=None, help="override the tasks' beam sizes")
    parser.add_argument("--shuffled-media", action="store_true",
                        help="also score the model with every example's media taken from another scene")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="write every prediction as JSON lines (default with --output: OUTPUT.predictions.jsonl)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader worker processes that decode the media of the next batches (default 0: none)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="the model's dtype (bfloat16: the audio front end stays float32)")
    args = parser.parse_args(argv)
    if args.num_workers < 0:
        parser.error(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.predictions is None and args.output is not None:
        args.predictions = args.output.with_suffix(".predictions.jsonl")
    _check_arguments(parser, args)

    import modeling_unival  # noqa: F401  (registers the Auto classes)
    from transformers import AutoModelForSeq2SeqLM, AutoProcessor

    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import load_world

    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    processor = AutoProcessor.from_pretrained(args.model)
    world = load_world(args.world)
    for split, why in ((args.split, "--split"), ("train", "the prior baseline's answers")):
        if split not in world:
            parser.error(f"{why}: the world {args.world} has no split {split!r}; its splits: {sorted(world)}")
    examples = list(world[args.split])
    if args.max_per_task:
        counts, kept = Counter(), []
        for example in examples:
            if counts[example["task"]] < args.max_per_task:
                counts[example["task"]] += 1
                kept.append(example)
        examples = kept
    overrides = {"num_beams": args.num_beams} if args.num_beams else None
    collator = UnivalMultitaskCollator(processor, training=False)
    results = evaluate_examples(model, collator, examples, list(world["train"]), args.batch_size, overrides,
                                shuffled_media=args.shuffled_media, predictions_file=args.predictions,
                                progress=not args.no_progress, num_workers=args.num_workers)
    print(format_results(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
