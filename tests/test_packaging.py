"""`pip install .` gives importable top-level packages with their data files (not just the source tree)."""

import subprocess
import sys
import sysconfig
import textwrap
import venv

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_pip_install_into_a_clean_venv(tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    # The dependencies (torch, transformers, ...) come from this environment through a .pth file, so the test
    # installs only the package itself, from a build of this checkout, without touching the network.
    (tmp_path / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(["cp", str(tmp_path / "deps.pth"), site], check=True)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
         "--quiet", str(REPO_ROOT)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    script = textwrap.dedent(
        """
        import importlib, pathlib
        for name in ("modeling_unival", "processing", "training", "hub_upload"):
            module = importlib.import_module(name)
            assert "site-packages" in module.__file__, (name, module.__file__)
        import processing
        data = pathlib.Path(processing.__file__).parent / "data" / "bpe"
        assert {p.name for p in data.iterdir()} >= {"encoder.json", "vocab.bpe", "dict.txt"}, list(data.iterdir())
        from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
        UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny"))
        print("installed ok")
        """
    )
    result = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "installed ok" in result.stdout
