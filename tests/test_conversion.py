"""The conversion package: the original -> port key map (on the full released key list and on the parity fixtures),
the config derivation, the parity command, and the package's place between the layers."""

import ast
import io
import json
import re
from contextlib import redirect_stdout

import pytest
import torch

from conftest import REPO_ROOT, shared_path
from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.conversion import (
    audio_config_from_original,
    config_from_original_args,
    convert_original_key,
    convert_original_state_dict,
)


def expand_key_list(path):
    """Parses `unival_state_dict_keys.txt`: `key [d0,d1,...] (dtype)` lines with `{a-b}` / `{a}` index ranges."""
    entries = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^((?:encoder|decoder)\.\S+) \[([\d,]*)\]", line)
        if not match:
            continue
        pattern, shape = match.group(1), tuple(int(x) for x in match.group(2).split(",") if x)
        keys = [pattern]
        while any("{" in k for k in keys):
            expanded = []
            for key in keys:
                m = re.search(r"\{(\d+)(?:-(\d+))?\}", key)
                if not m:
                    expanded.append(key)
                    continue
                lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
                expanded += [key[: m.start()] + str(i) + key[m.end() :] for i in range(lo, hi + 1)]
            keys = expanded
        dtype = torch.long if "int64" in line else torch.float16
        for key in keys:
            entries[key] = (shape, dtype)
    return entries


def test_released_key_list_maps_exactly_onto_the_base_preset():
    entries = expand_key_list(shared_path("reference", "unival_state_dict_keys.txt"))
    assert len(entries) > 1500
    original = {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in entries.items()}
    converted = convert_original_state_dict(original)
    with torch.device("meta"):
        model = UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-base"))
    expected = model.state_dict()
    tied = {"lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"}
    assert set(converted) == set(expected) - tied, (
        sorted(set(converted) - set(expected))[:10],
        sorted(set(expected) - tied - set(converted))[:10],
    )
    for key, value in converted.items():
        assert tuple(value.shape) == tuple(expected[key].shape), key
        assert value.dtype == (torch.float32 if expected[key].is_floating_point() else expected[key].dtype), key


def test_unknown_key_is_refused():
    with pytest.raises(KeyError, match="no counterpart"):
        convert_original_key("encoder.layers.0.self_attn.mystery.weight")
    with pytest.raises(KeyError, match="not under encoder"):
        convert_original_key("classification_heads.vqa.dense.weight")


def test_untied_embeddings_are_refused():
    weight = torch.randn(10, 4)
    with pytest.raises(ValueError, match="ties all token embeddings"):
        convert_original_state_dict({"encoder.embed_tokens.weight": weight, "decoder.embed_tokens.weight": weight + 1})


@pytest.mark.slow
def test_parity_command_on_the_shipped_fixtures():
    from modeling_unival.parity import main

    folder = shared_path("fixtures", "parity")
    out = io.StringIO()
    with redirect_stdout(out):
        status = main([str(folder)])
    text = out.getvalue()
    assert status == 0, text
    assert re.search(r"^parity: (\d+)/\1 cases ok$", text, re.M), text
    assert "recomputed exactly" in text and "DIFFERS" not in text


def test_position_entangling_flags_map_to_one_config_field():
    args = fixture_arguments()["args"]
    assert config_from_original_args(args).entangle_position_embedding is False  # the released setting
    entangled = {**args, "entangle_position_embedding": True, "disable_entangle": False}
    assert config_from_original_args(entangled).entangle_position_embedding is True
    with pytest.raises(NotImplementedError, match="disable_entangle"):
        config_from_original_args({**args, "entangle_position_embedding": True, "disable_entangle": True})


def fixture_arguments() -> dict:
    return json.loads((shared_path("fixtures", "parity") / "original_args.json").read_text())


def test_audio_tower_from_the_arguments_is_the_backbones_own():
    """The model arguments name the PANN variant and the audio settings; the result is the config the backbone's own
    constructor settings (the original's `AUDIO_CFG`) give."""
    meta = fixture_arguments()
    from_arguments = config_from_original_args(meta["args"], audio_cfg=meta["audio_cfg"]).audio_config
    assert from_arguments.to_dict() == audio_config_from_original(meta["audio_cfg"]).to_dict()
    assert (from_arguments.block_type, from_arguments.hop_length) == ("conv5x5", 200)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"qk_norm": True}, "qk_norm"),
        ({"resnet_type": "resnet18"}, "resnet_type"),
        ({"audio_encoder_name": "pann_cnn99"}, "cnn99"),
        ({"video_encoder_name": "resnext200"}, "video_encoder_name"),
        ({"activation_fn": "swish"}, "activation_fn"),
        ({"decoder_embed_dim": 32}, "widths differ"),
    ],
)
def test_unsupported_arguments_are_refused(override, message):
    with pytest.raises(NotImplementedError, match=message):
        config_from_original_args({**fixture_arguments()["args"], **override})


def _imported_modules(path) -> set[str]:
    """Every module a Python file imports, relative imports written with their leading dots."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
    return modules


def test_library_imports_stay_inside_their_layers():
    """Nothing in `modeling_unival` imports `training` or `hub_upload`; the files saved as remote code next to every
    checkpoint do not import the conversion package (a checkpoint must load without it)."""
    package = REPO_ROOT / "modeling_unival"
    for path in package.rglob("*.py"):
        top_levels = {module.split(".")[0] for module in _imported_modules(path)}
        assert not top_levels & {"training", "hub_upload"}, path
    for name in ("configuration_unival.py", "modeling_unival.py", "towers.py", "ids.py"):
        imported = _imported_modules(package / name)
        assert not any("conversion" in module for module in imported), (name, imported)
