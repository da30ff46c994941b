#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs the package with its
# test dependencies. Idempotent: a second run only checks that nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in .venv"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
else
  log "reusing .venv ($("$VENV/bin/python" --version))"
fi
PIP=("$VENV/bin/python" -m pip)

# torch is not in the package metadata (GPU users bring their own build). Without one, take the
# CPU wheel of torch 2.13.0, which is the one this project is tested with.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  log "installing torch==2.13.0 (CPU)"
  "${PIP[@]}" install --quiet "torch==2.13.0"
fi

# Reinstall the package only when its metadata changed since the last run.
STAMP="$VENV/.unival-install-stamp"
HASH=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ] || ! "$VENV/bin/python" -c "import modeling_unival" >/dev/null 2>&1; then
  log "installing the package and its dependencies (editable, extras: test, plot, demo)"
  "${PIP[@]}" install --quiet -e ".[test,plot,demo]"
  echo "$HASH" > "$STAMP"
else
  log "package already installed and up to date"
fi
# DeepSpeed, for the ZeRO-2 tests on CPU processes (tests/test_fsdp.py). Its source package imports torch to build,
# so it is built against the torch above (--no-build-isolation): with build isolation pip would fetch a CUDA torch.
if ! "$VENV/bin/python" -c "import deepspeed" >/dev/null 2>&1; then
  log "installing deepspeed==0.19.8 (built against the installed torch)"
  "${PIP[@]}" install --quiet --no-build-isolation "deepspeed==0.19.8"
fi
log "environment ready: $("$VENV/bin/python" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')"
