#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the package's main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[demo] running examples/demo.py"
exec .venv/bin/python examples/demo.py "$@"
