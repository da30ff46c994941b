"""Hostile inputs to the training and hub tools (issue 22): merge outputs over inputs, missing model directories,
misspelled recipe keys, non-checkpoint files for the converter, and incomplete checkpoints on resume."""

import json
import logging
import os
import pickle
import re
import types

import pytest
import torch

from processing import UnivalProcessor
from tiny import tiny_model
from training.merge import interpolate_pair, main as merge_main, save_merged


# --------------------------------------------------------------------------------------------------------------------
# training.merge: the output directory and missing inputs
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_merge")
    processor = UnivalProcessor()
    for name, seed in (("a", 0), ("b", 1)):
        tiny_model(seed).save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return root


def _weights(directory):
    return (directory / "model.safetensors").read_bytes()


def _leftovers(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_merge_refuses_an_input_as_output_however_it_is_spelled(saved_models, monkeypatch, capsys):
    monkeypatch.chdir(saved_models)
    os.symlink(saved_models / "a", saved_models / "link_to_a")
    before = _weights(saved_models / "a")
    for out in ("./a", "a/", "link_to_a", str(saved_models / "a")):
        with pytest.raises(SystemExit):
            merge_main(["--models", "a", "b", "--alpha", "0.5", "--task", "caption", "--out", out])
        error = capsys.readouterr().err
        assert "would overwrite its weights" in error and "--overwrite" in error, (out, error)
    assert _weights(saved_models / "a") == before


def test_merge_refuses_an_existing_directory_or_file_as_output(saved_models, capsys):
    a, b = str(saved_models / "a"), str(saved_models / "b")
    (saved_models / "notes").mkdir(exist_ok=True)
    (saved_models / "notes" / "todo.txt").write_text("keep me")
    (saved_models / "file.txt").write_text("a file")
    for out, message in (("notes", "exists and is not empty"), ("file.txt", "is an existing file")):
        with pytest.raises(SystemExit):
            merge_main(["--models", a, b, "--alpha", "0.5", "--task", "caption", "--out", str(saved_models / out)])
        assert message in capsys.readouterr().err
    # --overwrite replaces saved models only, never an arbitrary directory
    with pytest.raises(SystemExit):
        merge_main(["--models", a, b, "--alpha", "0.5", "--task", "caption", "--out", str(saved_models / "notes"),
                    "--overwrite"])
    assert "not a saved model directory" in capsys.readouterr().err
    assert (saved_models / "notes" / "todo.txt").read_text() == "keep me"


def test_merge_with_overwrite_replaces_an_input_whole(tmp_path):
    processor = UnivalProcessor()
    for name, seed in (("a", 0), ("b", 1)):
        tiny_model(seed).save_pretrained(tmp_path / name)
        processor.save_pretrained(tmp_path / name)
    (tmp_path / "a" / "stale.txt").write_text("from the old model")
    before = _weights(tmp_path / "a")
    merge_main(["--models", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.5", "--task", "caption",
                "--out", str(tmp_path / "a"), "--overwrite"])
    assert _weights(tmp_path / "a") != before
    assert (tmp_path / "a" / "merge_recipe.json").exists() and not (tmp_path / "a" / "stale.txt").exists()
    assert _leftovers(tmp_path) == []


class _Killed(BaseException):
    """An interruption (as `KeyboardInterrupt`, which pytest itself would act on)."""


def test_interrupted_save_leaves_no_half_written_model(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    merged = interpolate_pair(tiny_model(0), tiny_model(1), 0.5, task="caption")
    tiny_model(2).save_pretrained(tmp_path / "old")
    before = _weights(tmp_path / "old")
    original_save = PreTrainedModel.save_pretrained

    def save_then_die(self, directory, **kwargs):
        original_save(self, directory, **kwargs)
        raise _Killed  # killed after the weights, before the processor and the card

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_then_die)
    with pytest.raises(_Killed):
        save_merged(merged, tmp_path / "new", processor=UnivalProcessor())
    assert not (tmp_path / "new").exists() and _leftovers(tmp_path) == []

    with pytest.raises(_Killed):
        save_merged(merged, tmp_path / "old", processor=UnivalProcessor(), overwrite=True)
    assert _weights(tmp_path / "old") == before and _leftovers(tmp_path) == []
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_merged(merged, tmp_path / "old")


def test_merge_names_a_missing_model_directory(saved_models, monkeypatch, capsys):
    monkeypatch.chdir(saved_models)
    for missing in ("./missing", "missing", str(saved_models / "nope" / "model")):
        with pytest.raises(SystemExit):
            merge_main(["--models", "a", missing, "--alpha", "0.5", "--task", "caption", "--out", "never"])
        error = capsys.readouterr().err
        assert f"model directory {missing} does not exist" in error and "Repo id" not in error, error
    adapter = saved_models / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "./no/such/base"}))
    with pytest.raises(SystemExit):
        merge_main(["--models", "a", "adapter", "--alpha", "0.5", "--task", "caption", "--out", "never"])
    error = capsys.readouterr().err
    assert "model directory ./no/such/base" in error and "does not exist" in error and "Repo id" not in error
    with pytest.raises(SystemExit):
        merge_main(["--models", "a", "b", "--alpha", "0.5", "--task", "caption", "--out", "never",
                    "--processor", "./no_processor"])
    assert "--processor: model directory ./no_processor does not exist" in capsys.readouterr().err
    assert not (saved_models / "never").exists()


# --------------------------------------------------------------------------------------------------------------------
# Recipes: every section refuses unknown keys, with a suggestion
# --------------------------------------------------------------------------------------------------------------------
BASE_RECIPE = {"sources": {"w": {"type": "synthetic"}}, "stages": [{"name": "s", "datasets": [{"source": "w"}]}]}


def _recipe(**sections):
    return {**json.loads(json.dumps(BASE_RECIPE)), **sections}


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"model": {"init_form": "path/to/model"}}, r"model: unknown key\(s\) \['init_form'\] \(did you mean 'init_from'\?\)"),
        ({"model": {"overides": {"d_model": 64}}}, r"model: unknown key\(s\) \['overides'\] \(did you mean 'overrides'\?\)"),
        ({"model": {"presett": "unival-tiny"}}, r"model: unknown key\(s\) \['presett'\] \(did you mean 'preset'\?\)"),
        ({"model": {"overrides": {"d_modle": 64}}}, r"model overrides: unknown config field\(s\) \['d_modle'\] \(did you mean 'd_model'\?\)"),
        ({"model": {"init_from": "x", "preset": "unival-tiny"}}, "not both"),
        ({"processor": {"image_sise": 64}}, r"processor: unknown processor setting\(s\) \['image_sise'\] \(did you mean 'image_size'\?\)"),
        ({"sources": {"w": {"type": "synthetic", "num_example": 5}}}, r"source 'w' \(type synthetic\): .*\['num_example'\] \(did you mean 'num_examples'\?\)"),
        ({"sources": {"w": {"type": "tsv", "kind": "caption", "file": ["a.tsv"]}}}, r"source 'w' \(type tsv\): unknown key\(s\) \['file'\] \(did you mean 'files'\?\)"),
        ({"sources": {"w": {"type": "hf", "path": "x", "task": "vqa", "colums": {}}}}, r"\['colums'\] \(did you mean 'columns'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w"}], "trainig": {}}]}, r"stage 's': unknown key\(s\) \['trainig'\] \(did you mean 'training'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w", "task": ["caption"]}]}]}, r"stage 's' dataset: .*\(did you mean 'tasks'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w"}], "training": {"max_step": 3}}]}, r"stage 's' training: unknown TrainingArguments field\(s\) \['max_step'\] \(did you mean 'max_steps'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w"}], "processor": {"num_frame": 4}}]}, r"stage 's' processor: .*\(did you mean 'num_frames'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w"}], "sampling": {"temprature": 2}}]}, r"stage 's' sampling: .*\(did you mean 'temperature'\?\)"),
        ({"stages": [{"name": "s", "datasets": [{"source": "w"}], "model": {"label_smothing": 0.1}}]}, r"stage 's' model: .*\(did you mean 'label_smoothing'\?\)"),
        ({"nmae": "x"}, r"recipe: unknown key\(s\) \['nmae'\] \(did you mean 'name'\?\)"),
    ],
)
def test_recipe_typos_are_refused_with_a_suggestion(sections, message):
    from training.recipe import parse_recipe

    with pytest.raises(ValueError, match=message):
        parse_recipe(_recipe(**sections))


def test_recipe_typo_given_with_set_is_refused(tmp_path):
    from training.recipe import load_recipe

    with pytest.raises(ValueError, match=r"did you mean 'init_from'\?"):
        load_recipe("synthetic_tiny", ["model.init_form=outputs/x"])


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("unclosed.yaml", "name: x\nstages: [\n  - {name: a\n", r"recipe .*unclosed\.yaml: not valid YAML \(while parsing .*line 3"),
        ("tab.yaml", "name: x\n\tbad: tab\n", r"recipe .*tab\.yaml: not valid YAML \(.*'\\t'"),
        ("list.yaml", "- a\n- b\n", r"recipe .*list\.yaml: a recipe must be a mapping of sections, got list"),
        ("broken.json", "{\"name\": ", r"recipe .*broken\.json: not valid JSON"),
    ],
)
def test_a_malformed_recipe_file_is_named(tmp_path, name, text, message):
    from training.recipe import load_recipe

    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_recipe(tmp_path / name)


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("model.preset=[unclosed", r"--set 'model.preset=\[unclosed': the value is not valid YAML"),
        ("stages.x=1", r"--set 'stages.x=1': stages is a list, not a mapping"),
        ("model.preset", r"expected KEY.PATH=VALUE"),
        ("stages.nosuch.training.max_steps=1", r"the recipe has no stage 'nosuch'"),
    ],
)
def test_a_malformed_set_assignment_is_named(assignment, message):
    from training.recipe import load_recipe

    with pytest.raises(ValueError, match=message):
        load_recipe("synthetic_tiny", [assignment])


def test_valid_recipe_sections_still_parse():
    from training.recipe import load_recipe, parse_recipe

    recipe = parse_recipe(_recipe(model={"preset": "unival-tiny", "overrides": {"d_model": 64}},
                                  processor={"image_size": 96}))
    assert recipe.model["overrides"] == {"d_model": 64}
    for name in ("synthetic_tiny", "unival_original"):
        load_recipe(name)


def test_tsv_source_with_file_instead_of_files_is_named(tmp_path):
    from training.sources import load_source

    with pytest.raises(ValueError, match=r"source 'coco' \(type tsv\): unknown key\(s\) \['file'\] \(did you mean 'files'\?\)"):
        load_source("coco", {"type": "tsv", "kind": "caption", "file": [str(tmp_path / "a.tsv")]})
    with pytest.raises(ValueError, match=r"source 'coco' \(type tsv\): missing key\(s\) \['files'\]"):
        load_source("coco", {"type": "tsv", "kind": "caption"})
    with pytest.raises(ValueError, match=r"source 'qa' \(type hf\): missing key\(s\) \['task'\]"):
        load_source("qa", {"type": "hf", "path": str(tmp_path)})


# --------------------------------------------------------------------------------------------------------------------
# hub_upload.convert: files that are not checkpoints, unsafe pickles, an --out that is a file
# --------------------------------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _convert(checkpoint, out, capsys):
    from hub_upload.convert import main as convert_main

    code = convert_main(["--checkpoint", str(checkpoint), "--out", str(out)])
    return code, capsys.readouterr()


@pytest.mark.parametrize("legacy_pickle", [True, False])
def test_convert_refuses_an_unsafe_pickle_naming_the_global(tmp_path, capsys, legacy_pickle):
    marker = tmp_path / "executed"
    checkpoint = tmp_path / "evil.pt"
    if legacy_pickle:
        with open(checkpoint, "wb") as handle:
            pickle.dump({"model": _Evil(marker)}, handle, protocol=2)
    else:
        torch.save({"model": _Evil(marker)}, checkpoint)
    code, printed = _convert(checkpoint, tmp_path / "out", capsys)
    assert code == 1 and not marker.exists()
    assert "refusing to unpickle" in printed.err and "system" in printed.err, printed.err  # posix.system / nt.system
    assert "weights_only" not in printed.err, printed.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n" + bytes(64), b"hello, this is a text file\n", b"{\"model\": {}}", b"\x80"],
    ids=["png", "text", "json", "one byte"],
)
def test_convert_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys, content):
    checkpoint = tmp_path / "file.pt"
    checkpoint.write_bytes(content)
    code, printed = _convert(checkpoint, tmp_path / "out", capsys)
    assert code == 1
    assert "is not a PyTorch checkpoint" in printed.err, printed.err
    assert "weights_only" not in printed.err and "Traceback" not in printed.err


def test_convert_checks_the_output_path_before_converting(tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": {}}, checkpoint)
    (tmp_path / "taken").write_text("a file")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        code, printed = _convert(checkpoint, out, capsys)
        assert code == 1 and "is an existing file, not a directory" in printed.err, printed.err
        assert "[convert] reading" not in printed.out  # refused before the conversion started


# --------------------------------------------------------------------------------------------------------------------
# Resuming: incomplete checkpoints (a run killed while saving) are skipped
# --------------------------------------------------------------------------------------------------------------------
def _checkpoint(root, step, files=("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")):
    directory = root / f"checkpoint-{step}"
    directory.mkdir(parents=True)
    for name in files:
        (directory / name).write_text(json.dumps({"global_step": step}) if name.endswith(".json") else "x")
    return directory


def test_resume_picks_the_newest_complete_checkpoint(tmp_path, caplog):
    from training.stages import last_complete_checkpoint

    complete = _checkpoint(tmp_path, 20)
    _checkpoint(tmp_path, 5)
    _checkpoint(tmp_path, 100, files=("model.safetensors", "optimizer.pt"))  # killed before trainer_state.json
    truncated = _checkpoint(tmp_path, 40)
    (truncated / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    _checkpoint(tmp_path, 30, files=("trainer_state.json",))  # no weights
    with caplog.at_level(logging.WARNING, logger="training.stages"):
        assert last_complete_checkpoint(tmp_path, ("optimizer.pt", "scheduler.pt")) == complete
    logged = caplog.text
    assert "checkpoint-100 (no trainer_state.json)" in logged
    assert "checkpoint-40 (trainer_state.json is truncated or unreadable)" in logged
    assert "checkpoint-30 (no model weights" in logged
    assert "checkpoint-20" not in logged
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_train_and_summarise_resumes_from_the_complete_checkpoint(tmp_path):
    from training.ema import EMA_FILE, WeightEMA
    from training.stages import train_and_summarise

    class FakeTrainer:
        def __init__(self, callbacks=()):
            self.args = types.SimpleNamespace(save_only_model=False)
            self.callback_handler = types.SimpleNamespace(callbacks=list(callbacks))
            self.state = types.SimpleNamespace(log_history=[{"loss": 1.0}])
            self.is_fsdp_enabled = False
            self.accelerator = types.SimpleNamespace(is_main_process=True, distributed_type="NO", num_processes=1)
            self.model_wrapped = None
            self.resumed_from = "not called"

        def train(self, resume_from_checkpoint=None):
            self.resumed_from = resume_from_checkpoint
            return types.SimpleNamespace(training_loss=1.0, global_step=3)

    trainer = FakeTrainer()
    assert train_and_summarise(trainer, tmp_path, "true")["global_step"] == 3
    assert trainer.resumed_from is None  # nothing to resume from: a fresh run
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, files=("model.safetensors",))
    train_and_summarise(trainer, tmp_path, "true")
    assert trainer.resumed_from == str(tmp_path / "checkpoint-10")
    # with a weight average, a checkpoint without its EMA file is incomplete too
    ema_trainer = FakeTrainer([WeightEMA()])
    train_and_summarise(ema_trainer, tmp_path, "last")
    assert ema_trainer.resumed_from is None
    (tmp_path / "checkpoint-10" / EMA_FILE).write_text("x")
    train_and_summarise(ema_trainer, tmp_path, "last")
    assert ema_trainer.resumed_from == str(tmp_path / "checkpoint-10")
    with pytest.raises(ValueError, match="checkpoint-20: incomplete checkpoint \\(no trainer_state.json\\)"):
        train_and_summarise(trainer, tmp_path, str(tmp_path / "checkpoint-20"))


# --------------------------------------------------------------------------------------------------------------------
# The command lines: training/finetune.py and training.evaluation name the flag of every bad argument
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, saved_models):
    from training.data.synthetic import generate_world

    root = tmp_path_factory.mktemp("hostile_cli")
    generate_world(root / "world", num_examples=40, seed=1)
    (root / "no_config").mkdir()
    (root / "results_dir").mkdir()
    return {"model": str(saved_models / "a"), "world": str(root / "world"), "root": root}


FINETUNE_CASES = [
    (["--model", "{root}/nope", "--world", "{world}"], FileNotFoundError, r"--model: model directory .*nope does not exist"),
    (["--model", "{root}/no_config", "--world", "{world}"], FileNotFoundError, r"--model: .*no_config has no config\.json"),
    (["--model", "{model}", "--world", "{world}", "--task", "captoin"], ValueError, r"--task must be one of .*'captoin'"),
    (["--model", "{model}", "--world", "{world}", "--hf_dataset", "x"], ValueError, "give exactly one data source"),
    (["--model", "{model}", "--hf_dataset", "{root}", "--columns", "{{bad"], ValueError, r"--columns must be a JSON object"),
    (["--model", "{model}", "--hf_dataset", "{root}", "--columns", "[1]"], ValueError, r"--columns must be a JSON object"),
    (["--model", "{model}", "--hf_dataset", "{root}/missing_arrow"], FileNotFoundError, r"dataset directory .*missing_arrow does not exist"),
    (["--model", "{model}", "--train_tsv", "{root}/no.tsv"], FileNotFoundError, r"--train_tsv: .*no\.tsv is not a file"),
    (["--model", "{model}", "--world", "{world}", "--eval_split", "nosplit"], ValueError, r"--eval_split: the data has no split 'nosplit'; its splits: \['test', 'train', 'validation'\]"),
    (["--model", "{model}", "--world", "{world}", "--train_split", "trian"], ValueError, r"--train_split: the data has no split 'trian'"),
    (["--model", "{model}", "--world", "{world}", "--loss", "hinge"], ValueError, r"--loss must be 'encouraging' or 'label_smoothed'"),
    (["--model", "{model}", "--world", "{world}", "--lora", "--lora_r", "0"], ValueError, r"--lora_r 0 \(>= 1\)"),
    (["--model", "{model}", "--world", "{world}", "--train_modules", "zzz"], ValueError, r"--train_modules 'zzz' matches no parameter"),
]


@pytest.mark.parametrize("argv, error, message", FINETUNE_CASES)
def test_finetune_names_the_flag_of_a_bad_argument(cli_inputs, tmp_path, argv, error, message):
    from training.finetune import run

    argv = [a.format(**cli_inputs) for a in argv]
    with pytest.raises(error, match=message):
        run(["--task", "caption", *argv, "--output_dir", str(tmp_path / "out"), "--max_steps", "1"])  # last wins
    assert not (tmp_path / "out" / "final").exists()


@pytest.mark.parametrize("argv", [["--max_step", "3"], ["--learning_rate", "abc"]])
def test_finetune_refuses_unknown_and_malformed_flags(cli_inputs, tmp_path, argv, capsys):
    from training.finetune import run

    with pytest.raises(SystemExit) as exit_info:
        run(["--model", cli_inputs["model"], "--world", cli_inputs["world"], *argv, "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and argv[0] in capsys.readouterr().err


EVALUATION_CASES = [
    (["--model", "{root}/nope"], r"--model: .*nope"),
    (["--model", "{root}/no_config"], r"--model: .*no_config has no config\.json"),
    (["--world", "{root}/no_config"], r"--world: .*no_config is not a synthetic world"),
    (["--output", "{root}/results_dir"], r"--output: .*results_dir is a directory"),
    (["--output", "{root}/missing/results.json"], r"--output: .*results\.json is in no existing directory"),
    (["--predictions", "{root}/results_dir"], r"--predictions: .*results_dir is a directory"),
    (["--batch-size", "0"], r"--batch-size: must be a positive integer, got 0"),
    (["--max-per-task", "-1"], r"--max-per-task: must be a positive integer, got -1"),
    (["--num-beams", "two"], r"--num-beams: invalid _positive_int value: 'two'"),
    (["--num-workers", "-1"], r"--num-workers must be >= 0, got -1"),
    (["--split", "tset"], r"--split: the world .* has no split 'tset'; its splits: \['test', 'train', 'validation'\]"),
    (["--dtype", "float8"], r"--dtype: invalid choice: 'float8'"),
]


@pytest.mark.parametrize("argv, message", EVALUATION_CASES)
def test_evaluation_names_the_flag_of_a_bad_argument(cli_inputs, argv, message, capsys):
    from training.evaluation import main

    given = dict(zip(argv[::2], (a.format(**cli_inputs) for a in argv[1::2])))
    given = {"--model": cli_inputs["model"], "--world": cli_inputs["world"], **given}
    with pytest.raises(SystemExit) as exit_info:
        main([item for pair in given.items() for item in pair])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and re.search(message, error), error
    assert "Traceback" not in error and not (cli_inputs["root"] / "missing").exists()
