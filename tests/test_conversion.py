"""The original -> port key map, on the full released key list and on the parity fixtures."""

import io
import re
from contextlib import redirect_stdout

import pytest
import torch

from conftest import shared_path
from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.conversion import convert_original_key, convert_original_state_dict


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
    import json

    from modeling_unival.conversion import config_from_original_args

    args = json.loads((shared_path("fixtures", "parity") / "original_args.json").read_text())["args"]
    assert config_from_original_args(args).entangle_position_embedding is False  # the released setting
    entangled = {**args, "entangle_position_embedding": True, "disable_entangle": False}
    assert config_from_original_args(entangled).entangle_position_embedding is True
    with pytest.raises(NotImplementedError, match="disable_entangle"):
        config_from_original_args({**args, "entangle_position_embedding": True, "disable_entangle": True})
