"""Issue 11 item 13: "Next" after drawing outlines in a reading session, in
fresh processes under Xvfb/Mesa (it used to end in a segfault inside vispy's
glDrawArrays).

One command (from the repository root)::

    .venv/bin/python benchmarks/run_next_crash.py --runs 20

Each run is a fresh Python process under its own Xvfb (1920 × 1080): a new
napari window, the Reading session and Measure docks, a fresh observer,
Start, mark L4, three outlines drawn with real mouse clicks on the canvas
(finished with Enter), then Next pressed on the keyboard, and the second
case drawn into and left again. The parent counts the runs that crashed
(negative return code = killed by a signal, -11 = segfault) or failed.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gui  # noqa: E402


def child(folder, observer, via_button=False):
    import napari
    from qtpy.QtCore import Qt

    study, files = _gui.make_study(Path(folder), n_cases=3)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1040)
    _, session_dock = viewer.window.add_plugin_dock_widget("napari-pvm", "Reading session")
    session_dock.notify = lambda message, level="info": print(f"[{level}] {message}", flush=True)
    session_dock.folder_edit.setText(str(study.folder))
    session_dock.observer_edit.setText(observer)
    assert session_dock.start(), "session did not start"
    _gui.wait_until(lambda: session_dock.ready, timeout=30)
    for case in range(2):
        dock = session_dock.measure
        dock.confirm = lambda *a, **k: False
        image = session_dock.image_layer
        _gui.process_events_for(0.2)
        _mark(dock)
        layer = dock.outlines
        for key in ("PS_L", "PS_R", "ES_L"):
            _gui.draw_polygon(viewer, layer, _gui.phantom_outline_points(files, key, n=8))
        _gui.process_events_for(0.05)
        assert len(layer.data) == 3, f"case {case}: {len(layer.data)} outlines drawn"
        session_dock.ask_unfinished = lambda why: "leave"  # no row: leave it unfinished (this run is about the draw)
        if via_button:
            from qtpy.QtTest import QTest

            QTest.mouseClick(session_dock.next_button, Qt.MouseButton.LeftButton)
        else:
            _gui.key(viewer, "PageDown")
        _gui.wait_until(lambda old=image: session_dock.ready and session_dock.image_layer is not old, timeout=30)
        _gui.process_events_for(0.3)
    viewer.window._qt_window.grab()  # one more full draw of the new case
    viewer.close()
    print("ok", flush=True)
    del Qt


def child_napari_alone(folder):
    """The same layer operations without napari-pvm: a fresh viewer with an
    image, outlines (Shapes with polygons) and samples; then a new image is
    added and the populated Shapes layers and the old image are removed at
    once, as napari-pvm's Next used to do."""
    import napari
    import numpy as np

    from napari_pvm.core.annotation import read_annotation
    from napari_pvm.core.io import read_volume

    _, files = _gui.make_study(Path(folder), n_cases=1)
    volume = read_volume(files["image"])
    truth = read_annotation(files["annotation"])
    k = truth.slice_index
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1040)
    image = viewer.add_image(volume.data, scale=volume.spacing, name="old")
    outlines = viewer.add_shapes(
        [np.column_stack([np.full(len(v), k), v]) for v in truth.rois.values()],
        shape_type="polygon",
        scale=volume.spacing,
        face_color="transparent",
        features={"roi": list(truth.rois)},
        text={"string": "{roi}", "size": 8},
    )
    samples = viewer.add_shapes(
        [np.column_stack([np.full(len(s["vertices"]), k), s["vertices"]]) for s in truth.samples],
        shape_type="polygon",
        scale=volume.spacing,
        face_color="transparent",
    )
    step = list(viewer.dims.current_step)
    step[0] = k
    viewer.dims.current_step = tuple(step)
    _gui.process_events_for(0.5)
    outlines.add_polygons([np.column_stack([np.full(4, k), _gui.square((100, 100), 8)])])  # a just-drawn one
    viewer.add_image(volume.data, scale=volume.spacing, name="new")
    for layer in (image, outlines, samples):
        viewer.layers.remove(layer)
    _gui.process_events_for(0.5)
    viewer.window._qt_window.grab()
    viewer.close()
    print("ok", flush=True)


def _mark(dock):
    mark = getattr(dock, "mark_level", None)
    if callable(mark):
        mark("L4")
    else:
        dock.mark_current_slice()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--button", action="store_true", help="press Next with the mouse instead of the key")
    parser.add_argument(
        "--napari-alone", action="store_true", help="the same layer operations in napari alone, without napari-pvm"
    )
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "OBSERVER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.napari_alone:
            child_napari_alone(args.child[0])
        else:
            child(*args.child, via_button=args.button)
        return 0
    crashed, failed = 0, 0
    started = time.perf_counter()
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            code, out, err = _gui.run_fresh(
                [
                    _gui.python(),
                    __file__,
                    "--child",
                    tmp,
                    f"obs{i}",
                    *(["--button"] if args.button else []),
                    *(["--napari-alone"] if args.napari_alone else []),
                ],
                timeout=300,
            )
        state = "ok" if code == 0 and "ok" in out.split() else ("CRASH" if code < 0 else "FAILED")
        crashed += state == "CRASH"
        failed += state == "FAILED"
        tail = err.strip().splitlines()[-3:] if state != "ok" else []
        print(f"run {i + 1:2d}: {state} (exit {code}) {' | '.join(tail)}", flush=True)
    what = "napari alone" if args.napari_alone else "napari-pvm session"
    print(
        f"{what}, {args.runs} fresh-process runs: {args.runs - crashed - failed} ok, {crashed} crashed, {failed} failed "
        f"({time.perf_counter() - started:.0f} s; load average before {' '.join(load)})"
    )
    return 1 if crashed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
