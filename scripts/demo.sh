#!/usr/bin/env bash
# One command: set everything up, then run the main job. With no arguments it
# uses the bundled synthetic phantom: phantom → measure → shared CSV → table.
# Where a display is available it then opens napari with the image, the
# outlines and the napari-pvm docks.
#   bash scripts/demo.sh                      # phantom
#   bash scripts/demo.sh IMAGE ANNOTATION     # your own case
# IMAGE, ANNOTATION and PVM_DEMO_DIR may be relative to the folder you run it from.
set -euo pipefail
CALLER=$PWD
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER/$1" ;; esac; }
if [ $# -ge 2 ]; then
    IMAGE=$(absolute "$1"); ANNOTATION=$(absolute "$2")
fi
[ -n "${PVM_DEMO_DIR:-}" ] && PVM_DEMO_DIR=$(absolute "$PVM_DEMO_DIR")
cd "$(dirname "$0")/.."
[ -n "${PVM_SKIP_SETUP:-}" ] || bash scripts/setup.sh  # PVM_SKIP_SETUP=1: already set up
PVM=.venv/bin/napari-pvm
OUT=${PVM_DEMO_DIR:-pvm-demo}
mkdir -p "$OUT"
if [ $# -lt 2 ]; then
    "$PVM" phantom "$OUT" --seed 0 --force >/dev/null
    IMAGE="$OUT/phantom.nii.gz"; ANNOTATION="$OUT/phantom.pvm.json"
fi
"$PVM" measure "$IMAGE" "$ANNOTATION" --patient "${PVM_PATIENT:-PHANTOM}" --observer "${PVM_OBSERVER:-demo}" \
    --csv "$OUT/measurements.csv"
echo "row appended to $OUT/measurements.csv"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    exec "$PVM" gui "$IMAGE" --annotation "$ANNOTATION"
else
    echo "no display: napari was not opened. Run this again in a desktop session, or log in"
    echo "with X forwarding (ssh -X host), to work on the case in napari."
fi
