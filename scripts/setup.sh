#!/usr/bin/env bash
# Set up napari-pvm on a fresh Debian/Ubuntu machine: system packages for a
# virtual display (Xvfb) and PSPP (an independent statistics engine used by
# the tests), a virtual environment in .venv, and the package with its test
# extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v Xvfb >/dev/null 2>&1 || need_apt+=(xvfb)
command -v pspp >/dev/null 2>&1 || need_apt+=(pspp)
if [ ! -e /usr/lib/x86_64-linux-gnu/libxcb-icccm.so.4 ] && [ ! -e /usr/lib/aarch64-linux-gnu/libxcb-icccm.so.4 ]; then
    need_apt+=(libxcb-icccm4 libxcb-keysyms1)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    else
        echo "note: please install ${need_apt[*]} (apt-get install ${need_apt[*]}); continuing" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[testing]"
