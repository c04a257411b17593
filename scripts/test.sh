#!/usr/bin/env bash
# One command: set everything up, lint, then run the whole test suite and the
# examples in the core's docstrings (widgets run on a virtual X display
# started by pytest-xvfb). Arguments go to pytest instead of the default
# paths, e.g. `bash scripts/test.sh tests/core/test_stats.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
lint=0
.venv/bin/ruff check . || lint=$?   # lint and format problems fail the run, after the tests
.venv/bin/ruff format --check . || lint=$?
if [ $# -eq 0 ]; then
    set -- --doctest-modules src/napari_pvm/core tests
fi
.venv/bin/python -m pytest -q "$@"
exit "$lint"
