#!/usr/bin/env bash
# One command: set everything up, then run the main job. With no arguments it
# uses the bundled synthetic phantom: phantom → measure → shared CSV → table.
# Where a display is available it then opens napari with the image, the
# outlines and the napari-pvm docks.
#   bash scripts/demo.sh                      # phantom
#   bash scripts/demo.sh IMAGE ANNOTATION     # your own case
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PVM=.venv/bin/napari-pvm
OUT=${PVM_DEMO_DIR:-pvm-demo}
mkdir -p "$OUT"
if [ $# -ge 2 ]; then
    IMAGE=$1; ANNOTATION=$2
else
    "$PVM" phantom "$OUT" --seed 0 >/dev/null
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
