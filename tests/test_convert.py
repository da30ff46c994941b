"""`python -m hub_upload.convert` on the parity fixtures wrapped into a fairseq-style checkpoint file."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import shared_path
from hub_upload.convert import main as convert_main
from hub_upload.model_card import file_sha256
from modeling_unival import UnivalModel
from modeling_unival.parity import original_inputs_to_port
from transformers import AutoModel, AutoModelForImageTextToText, AutoModelForSeq2SeqLM, GenerationConfig


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = shared_path("fixtures", "parity")
    meta = json.loads((folder / "original_args.json").read_text())
    state_dict = torch.load(folder / "original_state_dict.pt", weights_only=True)
    tmp = tmp_path_factory.mktemp("convert")
    checkpoint = tmp / "checkpoint_best.pt"
    torch.save(
        {
            "args": None,
            "cfg": {"model": argparse.Namespace(**meta["args"]), "task": {"_name": "unify_task"}},
            "model": state_dict,
            "extra_state": {"ema": state_dict},
            "optimizer_history": [],
        },
        checkpoint,
    )
    out = tmp / "unival-parity"
    assert convert_main(["--checkpoint", str(checkpoint), "--out", str(out), "--task", "caption", "--ema"]) == 0
    return out, torch.load(folder / "cases.pt", weights_only=True)


def test_directory_is_complete(converted):
    out, _ = converted
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "modeling_unival.py",
            "configuration_unival.py", "towers.py", "generation.py", "tokenizer_config.json",
            "processor_config.json"} <= names, names
    generation = GenerationConfig.from_pretrained(out)
    # The original's caption settings: 22 free tokens and a forced, scored `</s>`.
    assert (generation.num_beams, generation.max_new_tokens, generation.no_repeat_ngram_size) == (5, 23, 3)
    assert generation.force_final_eos and generation.suppress_tokens == [1]
    assert generation.decoder_start_token_id == 0
    # The modeling code travels as remote code; the conversion package does not (a checkpoint loads without it).
    assert not any("conversion" in name for name in names), names


def test_card_of_the_converted_fixture_does_not_claim_a_release(converted):
    """The parity fixture is a small random model in the original's format: its card says so, from the facts."""
    out, _ = converted
    card = (out / "README.md").read_text()
    sha256 = file_sha256(out.parent / "checkpoint_best.pt")
    assert f"`checkpoint_best.pt`, sha256 `{sha256}`" in card and "its EMA weights" in card
    assert "architecture is not the released one (d_model 64 (released 768); " in card
    assert "image tower ResNet-50 (released ResNet-101)" in card
    assert "a test or custom checkpoint, not a released model" in card
    assert "original release" not in card.lower() and "137.0" not in card  # no results of the released models
    assert "bucket tables the file stores (`encoder.token_rp_bucket`, " in card
    assert "num_beams=5" in card and "```python" in card


@pytest.mark.parametrize("auto", [AutoModel, AutoModelForSeq2SeqLM, AutoModelForImageTextToText])
def test_converted_model_reproduces_the_parity_logits(converted, auto):
    out, cases = converted
    model = auto.from_pretrained(out).eval()
    for name, case in cases.items():
        inputs = original_inputs_to_port(case["inputs"])
        with torch.no_grad():
            outputs = model(**inputs)
        if isinstance(model, UnivalModel):
            torch.testing.assert_close(outputs.last_hidden_state, case["outputs"]["decoder_features"], rtol=0, atol=1e-4)
        else:
            torch.testing.assert_close(outputs.logits, case["outputs"]["logits"], rtol=0, atol=1e-4, msg=name)


@pytest.mark.slow
def test_converted_model_loads_with_remote_code_without_the_package(converted, tmp_path):
    out, cases = converted
    case = cases["video_text"]
    torch.save({"inputs": original_inputs_to_port(case["inputs"]), "logits": case["outputs"]["logits"]}, tmp_path / "io.pt")
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("modeling_unival", "processing", "training", "hub_upload"):
            sys.modules[name] = None
        import torch
        from transformers import AutoModelForImageTextToText
        io = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)
        model = AutoModelForImageTextToText.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**io["inputs"]).logits
        torch.testing.assert_close(logits, io["logits"], rtol=0, atol=1e-4)
        print("remote ok")
        """
    )
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_malicious_checkpoint_is_refused_by_the_cli(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Payload()}, path)
    assert convert_main(["--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "refusing to unpickle" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
