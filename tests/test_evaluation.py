"""The evaluation baselines (training/evaluation.py): the prior and the shuffled-media runs."""

from training.evaluation import MEDIA_FIELDS, evaluate_examples, format_results, score_records, with_shuffled_media


def example(task, group, modality="image", index=0, target="yes"):
    return {"id": f"{group}-{task}-{index}", "task": task, "modality": modality, "group_id": group,
            "image": f"pixels of {group}" if modality == "image" else None, "media_path": f"/media/{group}",
            "text": f"prompt {group} {index}", "target": target}


def test_shuffled_media_come_from_another_scene_of_the_same_task_and_modality():
    examples = [example("vqa", f"scene{s}", index=q) for s in range(5) for q in range(2)]  # two questions per scene
    examples += [example("qa_matching", "clip0", "video"), example("qa_matching", "clip1", "video"),
                 example("qa_matching", "scene0"), example("qa_matching", "scene1")]
    examples += [example("caption", "lonely")]  # no other scene to take media from
    before = [dict(e) for e in examples]
    shuffled = with_shuffled_media(examples)
    assert examples == before  # the originals are not touched
    assert len(shuffled) == len(examples)
    for original, copy in zip(examples, shuffled):
        def without_media(e):
            return {k: v for k, v in e.items() if k not in MEDIA_FIELDS}

        assert without_media(copy) == without_media(original)
        if original["group_id"] == "lonely":
            assert copy["media_path"] == original["media_path"]
            continue
        donor = copy["media_path"].rsplit("/", 1)[1]
        assert donor != original["group_id"]
        donors = [e for e in examples if e["group_id"] == donor and e["task"] == original["task"]]
        assert donors and all(d["modality"] == original["modality"] for d in donors)
        assert copy["image"] == donors[0]["image"]
    # A derangement spread over the scenes, not one donor for all.
    assert len({c["media_path"] for c in shuffled if c["task"] == "vqa"}) == 5


def test_score_records_and_format_results_report_both_baselines():
    references = [{"target": t} for t in ("yes", "no", "yes", "no")]
    records = [{"id": i, "task": "image_text_matching", "prediction": p, "reference": r}
               for i, (p, r) in enumerate(zip(["yes", "no", "yes", "no"], references))]
    shuffled = [dict(r, prediction="yes") for r in records]
    train = [{"task": "image_text_matching", "target": "no"}] * 3 + [{"task": "image_text_matching", "target": "yes"}]
    scores = score_records(records, train, shuffled)["image_text_matching"]
    assert scores == {"accuracy": 100.0, "examples": 4, "prior_accuracy": 50.0, "shuffled_accuracy": 50.0}
    lines = format_results({"image_text_matching": scores}).splitlines()
    assert lines[0].split() == ["task", "metric", "model", "prior", "shuffled", "n"]
    assert lines[1].split() == ["image_text_matching", "accuracy", "100.0", "50.0", "50.0", "4"]
    # without the shuffled run, its column stays empty
    del scores["shuffled_accuracy"]
    assert format_results({"image_text_matching": scores}).splitlines()[1].split()[-2:] == ["50.0", "4"]


def test_evaluate_examples_runs_the_shuffled_pass_on_other_scenes_media(monkeypatch):
    import training.evaluation as evaluation

    examples = [example("image_text_matching", f"scene{s}", target=f"scene{s}") for s in range(4)]
    passes = []

    def fake_generate(model, collator, items, *args):
        # A "model" that reads its media: it names the scene its media come from.
        passes.append([item["media_path"] for item in items])
        return [{"id": item["id"], "task": item["task"], "reference": {"target": item["target"]},
                 "prediction": item["media_path"].rsplit("/", 1)[1]} for item in items]

    monkeypatch.setattr(evaluation, "generate_predictions", fake_generate)
    scores = evaluation.evaluate_examples(None, None, examples, shuffled_media=True)["image_text_matching"]
    assert passes[0] == [e["media_path"] for e in examples]  # the real pass first, on the examples' own media
    assert all(a != b for a, b in zip(passes[0], passes[1]))  # then every example with another scene's media
    assert scores["accuracy"] == 100.0 and scores["shuffled_accuracy"] == 0.0
    passes.clear()
    assert "shuffled_accuracy" not in evaluation.evaluate_examples(None, None, examples)["image_text_matching"]
    assert len(passes) == 1  # no second pass unless asked


def test_cli_scores_a_saved_model_on_a_world_with_both_baselines(tmp_path, capsys):
    """`python -m training.evaluation --shuffled-media`: a saved model and processor, a world, one table, one JSON."""
    import json
    from collections import Counter

    from tiny import tiny_model
    from training.data.synthetic import generate_world
    from training.evaluation import main
    from training.stages import make_processor

    generate_world(tmp_path / "world", num_examples=80, seed=1)
    tiny_model().save_pretrained(tmp_path / "model")
    sizes = {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000}  # the tiny model's
    make_processor(sizes).save_pretrained(tmp_path / "model")
    output = tmp_path / "results.json"
    assert main(["--model", str(tmp_path / "model"), "--world", str(tmp_path / "world"), "--max-per-task", "2",
                 "--shuffled-media", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    test_tasks = {json.loads(line)["task"] for line in (tmp_path / "world" / "test.jsonl").read_text().splitlines()}
    assert set(results) == test_tasks
    for task, scores in results.items():
        metric = format_results({task: scores}).splitlines()[1].split()[1]
        assert {metric, f"prior_{metric}", f"shuffled_{metric}"} <= set(scores), task
        assert 1 <= scores["examples"] <= 2
    assert capsys.readouterr().out.strip() == format_results(results)
    # Every prediction of both passes, beside the scores.
    lines = [json.loads(line) for line in (tmp_path / "results.predictions.jsonl").read_text().splitlines()]
    assert Counter(line["run"] for line in lines) == {"model": sum(r["examples"] for r in results.values()),
                                                      "shuffled_media": sum(r["examples"] for r in results.values())}
    assert all({"id", "task", "prediction"} <= set(line) for line in lines)
    assert {line["task"] for line in lines} == test_tasks
    # Media decoded in a DataLoader worker: the same predictions and scores.
    workers = tmp_path / "workers.json"
    assert main(["--model", str(tmp_path / "model"), "--world", str(tmp_path / "world"), "--max-per-task", "2",
                 "--shuffled-media", "--output", str(workers), "--num-workers", "1", "--no-progress"]) == 0
    assert json.loads(workers.read_text()) == results
    assert (tmp_path / "workers.predictions.jsonl").read_text() == (tmp_path / "results.predictions.jsonl").read_text()


def test_greedy_and_beam_evaluation_emit_no_generation_warning(tmp_path):
    """Evaluation builds each task's generation config from the registry: neither the tasks' beam settings nor a
    greedy override (`num_beams=1`) makes `generate()` warn, whatever the checkpoint's own generation config."""
    import logging
    import warnings

    from processing import generation_config
    from tiny import tiny_model
    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import generate_world, load_world
    from training.stages import make_processor

    generate_world(tmp_path / "world", num_examples=80, seed=2)
    world = load_world(tmp_path / "world")
    model = tiny_model()
    model.generation_config = generation_config("caption")  # beam settings that a greedy pass must not inherit
    sizes = {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000}
    collator = UnivalMultitaskCollator(make_processor(sizes), training=False)
    examples = list(world["test"])[:12]
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for overrides in ({"num_beams": 1}, None):
                results = evaluate_examples(model, collator, examples, list(world["train"]), batch_size=4,
                                            generation_overrides=overrides)
                assert results
    finally:
        logger.removeHandler(handler)
    assert not [str(w.message) for w in caught if "generat" in str(w.message).lower()], caught
    assert not [m for m in messages if "generat" in m.lower() or "max_length" in m], messages


def test_label_tasks_are_scored_over_their_labels_as_the_original(tmp_path):
    """Entailment and the matching tasks predict the label of the best all-candidate score. Those scores are the ones
    a beam search restricted to the labels (a trie) gives each label: compared as numbers, label by label."""
    import torch
    from transformers import LogitsProcessorList

    from modeling_unival import AnswerTrie
    from processing.tasks import resolve_task
    from tiny import tiny_model
    from training.collator import UnivalMultitaskCollator
    from training.data.synthetic import generate_world, load_world
    from training.evaluation import generate_predictions
    from training.stages import make_processor

    generate_world(tmp_path / "world", num_examples=120, seed=3)
    examples = [e for e in load_world(tmp_path / "world")["train"] if resolve_task(e["task"]).labels][:16]
    assert len({e["task"] for e in examples}) >= 2
    sizes = {"image_size": 64, "num_frames": 4, "video_crop_size": 32, "audio_max_length": 24000}
    collator = UnivalMultitaskCollator(make_processor(sizes), training=False)
    tokenizer = collator.processor.tokenizer
    model = tiny_model(seed=5)
    records = {r["id"]: r["prediction"] for r in generate_predictions(model, collator, examples, batch_size=5)}
    assert len(records) == len(examples)
    for batch in collator.iter_generation_batches(examples, 5):
        labels = resolve_task(batch.task).labels
        candidates = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
        trie = AnswerTrie([c + [tokenizer.eos_token_id] for c in candidates], tokenizer.eos_token_id)
        inputs = dict(batch.inputs)
        prompt = inputs.pop("decoder_input_ids", torch.zeros((len(batch.references), 1), dtype=torch.long))
        prompt_mask = inputs.pop("decoder_attention_mask", None)
        with torch.no_grad():
            scores = model.score_candidates(candidates, prompt, prompt_mask, **inputs)
            out = model.generate(
                **batch.inputs, num_beams=len(labels), num_return_sequences=len(labels), max_new_tokens=4,
                force_final_eos=True, length_penalty=0.0, return_dict_in_generate=True, output_scores=True,
                logits_processor=LogitsProcessorList([trie.logits_processor(prompt.shape[1])]),
            )
        generated = out.sequences[:, prompt.shape[1] :].tolist()
        for flat, sequence in enumerate(generated):
            label = candidates.index(sequence[: sequence.index(tokenizer.eos_token_id)])
            torch.testing.assert_close(out.sequences_scores[flat], scores[flat // len(labels), label], atol=1e-5, rtol=0)
        assert [records[r["id"]] for r in batch.references] == [labels[i] for i in scores.argmax(-1).tolist()]
