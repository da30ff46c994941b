"""Model cards state what the weights are from facts (`hub_upload.model_card`)."""

import hashlib
import re
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard
from transformers import GenerationConfig

from hub_upload.model_card import ConvertedCheckpoint, architecture_differences, file_sha256, write_model_card
from modeling_unival import UnivalConfig


def test_the_released_architecture_has_no_differences():
    assert architecture_differences(UnivalConfig.from_preset("unival-base")) == []
    # Released finetunes leave out the towers their task does not use: that is still the released architecture.
    assert architecture_differences(UnivalConfig.from_preset("unival-base-image")) == []


def test_differences_name_the_value_found_and_the_released_one():
    differences = architecture_differences(UnivalConfig.from_preset("unival-tiny"))
    assert "d_model 32 (released 768)" in differences
    assert "layers (encoder + decoder) 2 + 2 (released 6 + 6)" in differences
    assert any(difference.startswith("audio tower PANN-style CNN") for difference in differences)
    hop = UnivalConfig.from_preset("unival-base", audio_config={"hop_length": 480})
    assert architecture_differences(hop) == [
        "audio tower PANN Cnn14, 48000 Hz, hop 480, 64 mel (released PANN Cnn14, 48000 Hz, hop 200, 64 mel)"
    ]


def test_card_of_a_conversion_with_the_released_architecture(tmp_path):
    UnivalConfig.from_preset("unival-base").save_pretrained(tmp_path)  # the card reads config.json only
    source = tmp_path / "checkpoint_best.pt"
    source.write_bytes(b"stand-in for the weights")
    provenance = ConvertedCheckpoint.from_file(source, ema=True, buffer_checks={"encoder.token_rp_bucket": True})
    card = write_model_card(tmp_path, provenance, "vqa").read_text()
    assert provenance.source_sha256 == hashlib.sha256(b"stand-in for the weights").hexdigest() == file_sha256(source)
    assert "Converted from an original checkpoint with the released `unival-base` architecture." in card
    assert f"`checkpoint_best.pt`, sha256 `{provenance.source_sha256}`" in card and "EMA weights" in card
    assert "| parameters | 325.0M | 325.0M |" in card
    assert "not a released model" not in card
    assert "137.0" in card and "not\nmeasured on this conversion" in card  # the authors' numbers, labelled as theirs


def test_card_of_a_custom_conversion_says_it_is_not_a_release(tmp_path):
    UnivalConfig.from_preset("unival-tiny").save_pretrained(tmp_path)
    card = write_model_card(tmp_path, ConvertedCheckpoint("checkpoint.pt", "ab" * 32), "caption").read_text()
    assert "whose architecture is not the released one (d_model 32 (released 768); " in card
    assert "a test or custom checkpoint, not a released model" in card
    assert "137.0" not in card and "released unival-base architecture" not in card


def test_card_with_the_writers_own_provenance(tmp_path):
    """Other writers (finetunes, merges, preset folders) state their provenance in their own words."""
    UnivalConfig.from_preset("unival-tiny").save_pretrained(tmp_path)
    path = write_model_card(tmp_path, "Randomly initialised, preset `unival-tiny`.", repo_id="tiny", tags=["random"])
    card = ModelCard.load(path)
    assert "## Provenance\n\nRandomly initialised, preset `unival-tiny`." in card.content
    assert "Converted" not in card.content and "137.0" not in card.content and "## Task" not in card.content
    assert "# tiny" in card.content and "| parameters | 2.1M | 325.0M |" in card.content
    assert {"unival", "image-to-text", "video-text-to-text", "audio-text-to-text", "random"} <= set(card.data.tags)


@pytest.mark.parametrize("task", ["caption", "vqa", "visual_grounding"])
def test_usage_snippet_runs(tmp_path, task):
    """The card's snippet, pointed at a local directory in the layout `convert` writes, runs as printed."""
    from processing import UnivalImageProcessor, UnivalProcessor
    from media_fixtures import make_image
    from tiny import tiny_model

    model = tiny_model()
    out = tmp_path / "unival-tiny"
    model.generation_config = GenerationConfig(decoder_start_token_id=0, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                                               num_beams=2, max_new_tokens=5)
    model.save_pretrained(out)
    UnivalProcessor(image_processor=UnivalImageProcessor(size=128)).save_pretrained(out)
    card = write_model_card(out, "A tiny test model.", task, repo_id=str(out)).read_text()
    assert "num_beams=2" in card and "max_new_tokens=5" in card  # the directory's generation settings
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    make_image(60, 80).save(tmp_path / "photo.jpg")
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() != ""
