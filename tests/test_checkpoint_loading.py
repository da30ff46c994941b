"""Safe reading of original fairseq checkpoints."""

import argparse
import os

import numpy as np
import pytest
import torch

from modeling_unival.conversion import UnsafeCheckpointError, load_original_checkpoint, original_arguments, select_weights


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def fairseq_style_checkpoint(path, state_dict, args, ema=None):
    checkpoint = {
        "args": None,
        "cfg": {"model": argparse.Namespace(**args), "task": {"_name": "unify_task"}, "common": {"fp16": True}},
        "model": state_dict,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "AdjustLabelSmoothedCrossEntropyCriterion", "num_updates": 10}],
        "task_state": {},
        "extra_state": {"metrics": {"loss": np.float64(1.5)}, "previous_training_time": 1.0, "best": np.array([0.5])},
    }
    if ema is not None:
        checkpoint["extra_state"]["ema"] = ema
    torch.save(checkpoint, path)


def test_fairseq_checkpoint_loads_with_namespace_and_numpy(tmp_path):
    state_dict = {"encoder.embed_tokens.weight": torch.randn(4, 2).half()}
    ema = {"encoder.embed_tokens.weight": torch.randn(4, 2).half()}
    path = tmp_path / "checkpoint_best.pt"
    fairseq_style_checkpoint(path, state_dict, {"encoder_layers": 6, "resnet_type": "resnet101"}, ema=ema)
    checkpoint = load_original_checkpoint(path)
    assert original_arguments(checkpoint)["resnet_type"] == "resnet101"
    assert torch.equal(select_weights(checkpoint)["encoder.embed_tokens.weight"], state_dict["encoder.embed_tokens.weight"])
    assert torch.equal(select_weights(checkpoint, ema=True)["encoder.embed_tokens.weight"], ema["encoder.embed_tokens.weight"])


def test_missing_ema_is_named(tmp_path):
    path = tmp_path / "c.pt"
    fairseq_style_checkpoint(path, {"w": torch.zeros(1)}, {})
    with pytest.raises(ValueError, match="no EMA weights"):
        select_weights(load_original_checkpoint(path), ema=True)


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system|system"):
        load_original_checkpoint(path)
    assert not marker.exists()


def test_empty_and_non_checkpoint_files(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_original_checkpoint(empty)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises((ValueError, UnsafeCheckpointError)):
        load_original_checkpoint(text)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="not a fairseq checkpoint"):
        load_original_checkpoint(plain)
    with pytest.raises(FileNotFoundError):
        load_original_checkpoint(tmp_path / "missing.pt")
