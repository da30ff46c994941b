"""Shared test settings: offline hub, the `../shared` fixtures, tiny models."""

import os
from pathlib import Path

import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under `../shared`. Skips the test only outside CI when the folder is missing (an outside user's
    clone); in CI a missing folder fails the test."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing, and CI must run the tests that need it")
        pytest.skip(f"{path} not available (outside CI)")
    return path


@pytest.fixture
def parity_fixtures() -> Path:
    return shared_path("fixtures", "parity")


@pytest.fixture(scope="module")
def original_generation():
    """The parity fixture's model, converted (eval, float32), with the original's decoded outputs (`generation.pt`)
    and the cases whose inputs they reuse (`cases.pt`)."""
    import torch

    from modeling_unival.parity import load_original_model

    folder = shared_path("fixtures", "parity", "generation.pt").parent
    model, _ = load_original_model(folder)
    load = lambda name: torch.load(folder / name, map_location="cpu", weights_only=True)  # noqa: E731
    return model, load("generation.pt"), load("cases.pt")
