"""Preset folders (`modeling_unival.save_preset`, `python -m modeling_unival.presets`) and the error for a name that
is no folder."""

import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoProcessor
from transformers.utils import logging as hf_logging

import modeling_unival
import processing
from conftest import REPO_ROOT
from modeling_unival import PRESETS, UnivalConfig, UnivalForConditionalGeneration, UnivalModel
from modeling_unival.presets import PRESET_PROCESSING


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def no_warnings():
    """Fails the test on any Python warning or transformers log record of level WARNING or above (transformers'
    library logger does not propagate to the root logger, so `caplog` would not see them)."""
    handler = _Records()
    library_logger = hf_logging.get_logger()
    library_logger.addHandler(handler)
    hf_logging.get_logger("transformers.generation.utils").warning("control")  # the capture itself works
    assert handler.messages == ["control"]
    handler.messages.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    library_logger.removeHandler(handler)
    assert not [str(w.message) for w in caught] and not handler.messages, (caught, handler.messages)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return modeling_unival.save_preset("unival-tiny", tmp_path_factory.mktemp("presets") / "unival-tiny", seed=1)


def test_save_preset_writes_model_processor_and_generation_config(tiny_folder):
    names = set(os.listdir(tiny_folder))
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json"} <= names
    saved = UnivalConfig.from_pretrained(tiny_folder).to_diff_dict()
    assert saved.pop("architectures") == ["UnivalForConditionalGeneration"]
    saved.pop("dtype")
    assert saved == UnivalConfig.from_preset("unival-tiny").to_diff_dict()


def test_preset_folder_loads_with_the_auto_classes_and_generates(tiny_folder, no_warnings):
    assert type(AutoModel.from_pretrained(tiny_folder)) is UnivalModel
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_folder).eval()
    assert type(model) is UnivalForConditionalGeneration
    expected = processing.generation_config("caption").to_diff_dict()
    assert {key: model.generation_config.to_diff_dict().get(key) for key in expected if key != "transformers_version"} == {
        key: value for key, value in expected.items() if key != "transformers_version"
    }
    processor = AutoProcessor.from_pretrained(tiny_folder)
    assert type(processor) is processing.UnivalProcessor
    assert processor.image_processor.size.height == PRESET_PROCESSING["unival-tiny"]["image_processor"]["size"]
    inputs = processor(task="caption", images=Image.new("RGB", (90, 60), (200, 30, 30)), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs)
    assert out.shape[0] == 1 and out.shape[1] > 1


@pytest.mark.slow
def test_cli_writes_the_same_folder_as_the_python_api(tiny_folder, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for seed in (1, 2):
        command = [sys.executable, "-m", "modeling_unival.presets", "unival-tiny", "--out", str(tmp_path / str(seed))]
        result = subprocess.run(command + ["--seed", str(seed)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "RuntimeWarning" not in result.stderr
        assert str(tmp_path / str(seed)) in result.stdout
    reference = load_file(tiny_folder / "model.safetensors")
    same_seed, other_seed = (load_file(tmp_path / str(seed) / "model.safetensors") for seed in (1, 2))
    assert reference.keys() == same_seed.keys()
    assert all(torch.equal(reference[key], same_seed[key]) for key in reference)
    assert not all(torch.equal(reference[key], other_seed[key]) for key in reference)


def test_save_preset_leaves_the_random_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    modeling_unival.save_preset("unival-tiny", tmp_path / "tiny")
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_unknown_preset_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown UnIVAL preset"):
        modeling_unival.save_preset("unival-huge", tmp_path / "huge")
    assert not (tmp_path / "huge").exists()


@pytest.mark.parametrize("load", [UnivalForConditionalGeneration, UnivalModel, UnivalConfig])
def test_a_name_that_is_no_folder_names_the_presets_and_the_command(load, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder "unival-base" here; the hub is offline (conftest)
    with pytest.raises(OSError) as error:
        load.from_pretrained("unival-base")
    message = str(error.value)
    assert ", ".join(PRESETS) in message
    assert "python -m modeling_unival.presets unival-base --out unival-base" in message
    assert "save_preset('unival-base', 'unival-base')" in message


def test_a_broken_folder_keeps_its_own_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(OSError) as error:
        UnivalConfig.from_pretrained(tmp_path)
    assert "modeling_unival.presets" not in str(error.value)
