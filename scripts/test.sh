#!/usr/bin/env bash
# One command: set everything up, then run the whole test suite (widgets run
# on a virtual X display started by pytest-xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
exec .venv/bin/python -m pytest -q "$@"
