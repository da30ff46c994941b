"""`python -m hub_upload.push` and `push_to_hub` against a local hub server, then `from_pretrained` from it."""

import json
import subprocess
import textwrap
import urllib.error
import urllib.request

import pytest
import torch

from checkpoint_support import (
    LOOPBACK_ONLY,
    PYTHON,
    save_tiny_checkpoint,
    single_torch_thread,
    subprocess_env,
    tiny_processor,
    write_media,
)
from hub_server import LocalHub
from hub_upload.push import InvalidModelDirError, check_model_dir, main


TOKEN = "hf_local_test_token"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with single_torch_thread():
        yield


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub_storage", token=TOKEN) as server:
        yield server
    assert server._server is None  # shut down


def hub_env(tmp_path, hub, **overrides):
    # HF_ENDPOINT must be set before huggingface_hub is imported, and offline mode refuses even localhost: hence a
    # subprocess with its own environment. Xet storage is not implemented by the local hub.
    return subprocess_env(
        tmp_path,
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN=TOKEN,
        HF_HUB_ETAG_TIMEOUT="10",
        HF_HUB_DOWNLOAD_TIMEOUT="30",
        **overrides,
    )


def run(args, tmp_path, env, timeout=240):
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Checking the directory
# ---------------------------------------------------------------------------------------------------------------------
def test_push_refuses_incomplete_directories(tmp_path, capsys):
    with pytest.raises(InvalidModelDirError, match="not a directory"):
        check_model_dir(tmp_path / "missing")
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(InvalidModelDirError, match="no config.json"):
        check_model_dir(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(InvalidModelDirError, match="not valid JSON"):
        check_model_dir(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "unival"}))
    with pytest.raises(InvalidModelDirError, match="no weights"):
        check_model_dir(folder)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidModelDirError, match="model-00002-of-00002.safetensors"):
        check_model_dir(folder)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert check_model_dir(folder)[0] == "model.safetensors.index.json"
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(InvalidModelDirError, match="empty"):
        check_model_dir(folder)

    # the CLI refuses before touching the network, with the reason
    assert main(["--model-dir", str(tmp_path / "empty"), "--repo-id", "someone/model"]) == 1
    assert "not a directory" in capsys.readouterr().err
    save_tiny_checkpoint(tmp_path / "ok")
    assert check_model_dir(tmp_path / "ok") == ["model.safetensors"]


# ---------------------------------------------------------------------------------------------------------------------
# The local hub itself
# ---------------------------------------------------------------------------------------------------------------------
def request(url, method="GET", token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(urllib.request.Request(url, data, headers, method=method), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_local_hub_errors_follow_the_hub_conventions(hub):
    assert hub.url.startswith("http://127.0.0.1:")
    status, headers, _ = request(f"{hub.url}/api/models/nobody/nothing")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    status, _, _ = request(f"{hub.url}/api/repos/create", "POST", body={"name": "tiny"})
    assert status == 401  # writes need the token
    status, _, body = request(f"{hub.url}/api/repos/create", "POST", token=TOKEN, body={"name": "tiny"})
    assert status == 200 and json.loads(body)["url"] == f"{hub.url}/unival-tester/tiny"
    assert request(f"{hub.url}/api/repos/create", "POST", token=TOKEN, body={"name": "tiny"})[0] == 409
    status, headers, _ = request(f"{hub.url}/unival-tester/tiny/resolve/main/config.json", "HEAD")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    status, headers, _ = request(f"{hub.url}/unival-tester/tiny/resolve/v2/.gitattributes", "HEAD")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    status, headers, body = request(f"{hub.url}/unival-tester/tiny/resolve/main/.gitattributes")
    assert status == 200 and b"*.safetensors filter=lfs" in body and len(headers["X-Repo-Commit"]) == 40
    status, _, body = request(f"{hub.url}/api/models/unival-tester/tiny/xet-write-token/main")
    assert status == 501 and b"HF_HUB_DISABLE_XET" in body
    # private repositories are invisible without the token
    request(f"{hub.url}/api/repos/create", "POST", token=TOKEN, body={"name": "secret", "visibility": "private"})
    assert request(f"{hub.url}/api/models/unival-tester/secret")[0] == 404
    assert request(f"{hub.url}/api/models/unival-tester/secret", token=TOKEN)[0] == 200


# ---------------------------------------------------------------------------------------------------------------------
# Push, then load from the hub
# ---------------------------------------------------------------------------------------------------------------------
LOAD_SCRIPT = """
import json
import torch
import modeling_unival, processing
from transformers import AutoModelForSeq2SeqLM, AutoProcessor

io = torch.load({io!r}, weights_only=True)
media = {media!r}
report = {{}}

def logits(name, **kwargs):
    model = AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs).eval()
    processor = AutoProcessor.from_pretrained(name, **kwargs)
    inputs = processor(task="vqa", text="what color is the circle?", images=media["image"], targets="red",
                       return_tensors="pt")
    assert torch.equal(inputs["input_ids"], io["input_ids"]), "the processor from the hub tokenises differently"
    with torch.no_grad():
        return model, processor, model(**inputs).logits

model, processor, out = logits({repo!r})
report["types"] = [type(model).__name__, type(processor).__name__, type(model).__module__]
report["max_diff"] = (out - io["logits"]).abs().max().item()
report["generation"] = model.generation_config.max_new_tokens

# transformers' own push_to_hub, then a load of that repository
model.push_to_hub({repo2!r})
processor.push_to_hub({repo2!r})
_, _, out2 = logits({repo2!r})
report["max_diff_push_to_hub"] = (out2 - io["logits"]).abs().max().item()

# a private repository, on a branch
_, _, out3 = logits({private_repo!r}, revision="dev")
report["max_diff_private_branch"] = (out3 - io["logits"]).abs().max().item()
print("REPORT " + json.dumps(report))
"""


@pytest.mark.slow
def test_push_then_from_pretrained_gives_the_same_model(hub, tmp_path):
    model = save_tiny_checkpoint(tmp_path / "unival-tiny")
    media = write_media(tmp_path)
    inputs = tiny_processor()(task="vqa", text="what color is the circle?", images=media["image"], targets="red",
                              return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.save({"input_ids": inputs["input_ids"], "logits": expected}, tmp_path / "io.pt")
    env = hub_env(tmp_path, hub)

    push = [PYTHON, "-m", "hub_upload.push", "--model-dir", str(tmp_path / "unival-tiny"), "--token", TOKEN]
    result = run(push + ["--repo-id", "unival-tester/unival-tiny", "--commit-message", "tiny UnIVAL"], tmp_path, env)
    assert result.stdout.strip().splitlines()[-1] == f"{hub.url}/unival-tester/unival-tiny"
    result = run(push + ["--repo-id", "private-tiny", "--private", "--revision", "dev"], tmp_path, env)
    assert result.stdout.strip().splitlines()[-1] == f"{hub.url}/unival-tester/private-tiny/tree/dev"

    repo = hub.repos["unival-tester/unival-tiny"]
    head = repo.commits[repo.branches["main"]]
    assert head.message == "tiny UnIVAL"
    local_files = {p.name for p in (tmp_path / "unival-tiny").iterdir()}
    assert local_files | {".gitattributes"} == set(head.files)
    assert head.files["model.safetensors"].lfs and not head.files["config.json"].lfs
    local_config = (tmp_path / "unival-tiny" / "config.json").read_bytes()
    assert hub.read_file("unival-tester/unival-tiny", "config.json") == local_config
    assert ("PUT", f"/lfs-upload/{head.files['model.safetensors'].sha256}") in hub.requests  # the LFS path was taken
    private = hub.repos["unival-tester/private-tiny"]
    assert private.private and "config.json" in private.commits[private.branches["dev"]].files
    assert "config.json" not in private.commits[private.branches["main"]].files

    script = LOOPBACK_ONLY + textwrap.dedent(
        LOAD_SCRIPT.format(io=str(tmp_path / "io.pt"), media=media, repo="unival-tester/unival-tiny",
                           repo2="unival-tester/unival-tiny-2", private_repo="unival-tester/private-tiny")
    )
    result = run([PYTHON, "-c", script], tmp_path, env, timeout=300)
    report = json.loads(result.stdout.split("REPORT ", 1)[1])
    assert report["types"][:2] == ["UnivalForConditionalGeneration", "UnivalProcessor"]
    assert report["max_diff"] == 0.0
    assert report["max_diff_push_to_hub"] == 0.0
    assert report["max_diff_private_branch"] == 0.0
    assert report["generation"] == 3  # generation_config.json came along
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= set(
        hub.list_files("unival-tester/unival-tiny-2")
    )
    # every request reached this server (the subprocesses refuse any other host)
    assert any(path.startswith("/unival-tester/unival-tiny/resolve/") for _, path in hub.requests)
