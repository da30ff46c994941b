"""Upload a saved UnIVAL model directory to the Hugging Face Hub.

    python -m hub_upload.push --model-dir unival-vqa --repo-id my-org/unival-vqa [--private] [--revision REV]
                              [--token T] [--commit-message M]

The directory is checked first (`config.json` and the weights must be there: `model.safetensors`, a sharded
`model.safetensors.index.json` with all its shards, or the `pytorch_model.bin` equivalents). Then the repository is
created if needed (`HfApi.create_repo(exist_ok=True)`), the branch `--revision` too, and the whole directory is
uploaded in one commit (`HfApi.upload_folder`). The script prints and returns the URL of the repository (of the branch
with `--revision`). Without `--token`, the token of `hf auth login` / `HF_TOKEN` is used; `HF_ENDPOINT` selects another
hub (set it before Python starts: `huggingface_hub` reads it on import).

`model.push_to_hub(repo_id)` and `processor.push_to_hub(repo_id)` are the transformers ones and work as usual; this
script uploads a directory as it is on disk (converted checkpoints with their model card, remote code and
`generation_config.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError


CONFIG_NAME = "config.json"
# (single file, index of a sharded checkpoint), preferred first.
WEIGHTS_NAMES = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
PROCESSOR_NAMES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
IGNORE_PATTERNS = ["__pycache__/*", "*.pyc", "*.incomplete", ".ipynb_checkpoints/*"]


class InvalidModelDirError(ValueError):
    """The directory is not a complete saved model."""


def check_model_dir(model_dir: str | Path) -> list[str]:
    """Check that `model_dir` holds a saved model: a readable `config.json` and complete weights.

    Returns the relative paths of the weight files. Raises `InvalidModelDirError` with what is missing.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InvalidModelDirError(f"{model_dir} is not a directory")
    config_file = model_dir / CONFIG_NAME
    if not config_file.is_file():
        raise InvalidModelDirError(
            f"{model_dir} has no {CONFIG_NAME}: save the model with `model.save_pretrained({str(model_dir)!r})` first"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidModelDirError(f"{config_file} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise InvalidModelDirError(f"{config_file} is not a transformers model config (no `model_type`)")

    for single, index in WEIGHTS_NAMES:
        if (model_dir / single).is_file():
            if (model_dir / single).stat().st_size == 0:
                raise InvalidModelDirError(f"{model_dir / single} is empty")
            return [single]
        if (model_dir / index).is_file():
            try:
                weight_map = json.loads((model_dir / index).read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as error:
                raise InvalidModelDirError(f"{model_dir / index} is not a valid weight index: {error}") from None
            missing = [shard for shard in shards if not (model_dir / shard).is_file()]
            if missing or not shards:
                raise InvalidModelDirError(
                    f"{model_dir / index} lists shards that are missing: {missing or 'none listed'}"
                )
            return [index, *shards]
    expected = " or ".join(name for pair in WEIGHTS_NAMES for name in pair)
    raise InvalidModelDirError(f"{model_dir} has no weights (expected {expected})")


def push_checkpoint(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload `model_dir` to `repo_id` (created if needed) and return the repository's URL.

    Args:
        model_dir: a directory written by `save_pretrained` (checked with `check_model_dir`).
        repo_id: `"namespace/name"`, or `"name"` for the token owner's namespace.
        private: create the repository private (an existing repository keeps its visibility).
        revision: the branch to commit to, created from the default branch if needed.
        token: a hub token; defaults to the saved one / `HF_TOKEN`.
        commit_message: defaults to "Upload UnIVAL model".
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = repo_url.repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    api.upload_folder(
        repo_id=repo_id,
        folder_path=model_dir,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or "Upload UnIVAL model",
        ignore_patterns=IGNORE_PATTERNS,
    )
    url = str(repo_url).rstrip("/")
    return f"{url}/tree/{revision}" if revision is not None else url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="directory written by save_pretrained")
    parser.add_argument("--repo-id", required=True, help="namespace/name (or name, in the token owner's namespace)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", default=None, help="branch to push to (created if needed)")
    parser.add_argument("--token", default=None, help="hub token (defaults to the saved token / HF_TOKEN)")
    parser.add_argument("--commit-message", default=None, help="commit message")
    args = parser.parse_args(argv)
    try:
        check_model_dir(args.model_dir)
        if not any((args.model_dir / name).is_file() for name in PROCESSOR_NAMES):
            print(f"[push] warning: {args.model_dir} has no processor or tokenizer files", file=sys.stderr)
        url = push_checkpoint(
            args.model_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            token=args.token,
            commit_message=args.commit_message,
        )
    except InvalidModelDirError as error:
        print(f"[push] error: {error}", file=sys.stderr)
        return 1
    except HfHubHTTPError as error:
        print(f"[push] the hub refused the upload: {error}", file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
