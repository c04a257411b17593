"""GUI responsiveness of napari-pvm under Xvfb, against napari alone.

One command (from the repository root)::

    .venv/bin/python benchmarks/bench_gui.py               # all conditions, 5 fresh processes each
    .venv/bin/python benchmarks/bench_gui.py --runs 7 --only preview next

Every run is a fresh Python process with its own Xvfb screen (1920 × 1080,
software OpenGL), so "first call in a fresh napari" is what is measured.

*Stall*: a 10 ms QTimer ticks on the GUI thread; the largest gap between two
ticks beyond its period, from the start of an action until the GUI has been
idle for 0.5 s after it ended, is the stall. For each action, the same run
also measures the *floor*: napari alone doing the same layer operations on
the same data in a fresh process (its first image, labels or shapes layer in
a fresh viewer costs napari itself a few hundred milliseconds on software
OpenGL). Conditions:

- ``open``: a reading session opens its first case (image read in a worker,
  then one image layer). Floor: ``viewer.add_image`` of that volume.
- ``next``: Next from a case with six outlines and samples to the next case.
  Floor: the same layer operations (add an image; remove two Shapes layers
  and the old image).
- ``load``: the Measure dock loads an annotation (six outlines, samples).
  Floor: two Shapes layers with the same polygons.
- ``train``: the first Train (full model) in the process. Floor: one Labels
  layer of the volume's shape (the fat map), added to a viewer that holds
  the image and two Shapes layers with the case's outlines and samples (the
  layers napari-pvm's viewer holds when it adds the fat map).
- ``measure``: the first Measure in the process. Floor: as for ``train``.
- ``reshape``: one Reshape stroke across the left psoas of a case with six
  outlines (the dock's ``reshape``, what a stroke's release runs: the core
  reshape, the neighbours' clip, the layers updated). Floor: napari alone
  replacing the data of a Shapes layer holding the same six polygons with
  the reshaped ones.

*Preview*: with "Live update" on, a brush stroke of the fat label is painted
with real mouse events on the canvas of a 512 × 512 slice; the latency is
from the mouse release to the end of the canvas draw that shows the updated
preview. The first stroke (features not cached yet) is reported apart from
the following ones.

Medians over the fresh processes are printed, with napari-pvm's excess over
the floor (``pvm - floor``), and the load average of the machine.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _gui  # noqa: E402

SETTLE_S = 0.5
CONDITIONS = ("open", "next", "load", "train", "measure", "reshape")


# ====================================================================== child
def _viewer():
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1900, 1000)
    _gui.process_events_for(1.0)
    return viewer


def _phantom(folder):
    from napari_pvm.core.phantom import write_phantom

    return write_phantom(Path(folder), seed=7)  # 512 × 512 × 5, L4 = slice 2


def _measure_stall(probe, start, done, timeout=120.0):
    """Run ``start()``, then the event loop until ``done()`` and 0.5 s more; the largest gap."""
    _gui.process_events_for(0.3)
    probe.reset()
    start()
    _gui.wait_until(done, timeout=timeout)
    _gui.process_events_for(SETTLE_S)
    return probe.stall_ms()


def _measure_dock(viewer, files):
    from napari_pvm._widgets.measure_widget import MeasureWidget

    viewer.open(str(files["image"]), plugin="napari-pvm")
    dock = MeasureWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Measure")
    dock.notify = lambda message, level="info": None
    dock.confirm = lambda *a, **k: True
    return dock


def _psoas_chord(truth, shape=(512, 512)):
    """A stroke across the left psoas, a little below its middle, 2 pixels past both sides."""
    import numpy as np

    from napari_pvm.core.rois import roi_mask

    rows, cols = np.nonzero(roi_mask(truth.rois["PS_L"], shape))
    row = np.floor(rows.mean() + 0.3 * (rows.max() - rows.mean())) + 0.5
    across = cols[np.abs(rows - row) < 1]
    return np.array([[row, across.min() - 2], [row, across.mean()], [row, across.max() + 2]])


def child(condition, variant, folder):
    """One measurement in this fresh process; prints one JSON line."""
    import numpy as np

    from napari_pvm.core.annotation import read_annotation
    from napari_pvm.core.io import read_volume

    files = _phantom(folder)
    viewer = _viewer()
    probe = _gui.StallProbe()
    volume = read_volume(files["image"])
    truth = read_annotation(files["annotation"])
    out = {"condition": condition, "variant": variant}

    if variant == "floor":
        from napari_pvm._reader import volume_layer_tuple

        data, kwargs, _ = volume_layer_tuple(volume)
        kwargs.pop("metadata")
        k = truth.slice_index
        shapes = [np.column_stack([np.full(len(v), k), v]) for v in truth.rois.values()]
        samples = [np.column_stack([np.full(len(s["vertices"]), k), s["vertices"]]) for s in truth.samples]
        if condition == "open":
            out["stall_ms"] = _measure_stall(probe, lambda: viewer.add_image(data, **kwargs), lambda: True)
        elif condition == "next":
            # the state napari-pvm's Next leaves before removing layers: the old image and
            # two emptied Shapes layers (napari alone with Shapes layers holding polygons
            # crashed in glDrawArrays here in some runs, before any removal)
            old = viewer.add_image(data, **dict(kwargs, name="old"))
            a = viewer.add_shapes(None, ndim=3, scale=volume.spacing, units=("mm",) * 3, face_color="transparent")
            b = viewer.add_shapes(None, ndim=3, scale=volume.spacing, units=("mm",) * 3, face_color="transparent")
            _gui.process_events_for(1.0)
            removed = []

            def swap():
                viewer.add_image(data, **dict(kwargs, name="new"))

                def remove():
                    with viewer.layers.batched_update():  # napari's own way to remove several layers
                        for layer in (a, b, old):
                            viewer.layers.remove(layer)
                    removed.append(True)

                from qtpy.QtCore import QTimer

                QTimer.singleShot(100, remove)

            out["stall_ms"] = _measure_stall(probe, swap, lambda: bool(removed))
        elif condition == "reshape":
            from napari_pvm.core.reshape import reshape_outline

            viewer.add_image(data, **kwargs)
            layer = viewer.add_shapes(shapes, shape_type="polygon", scale=volume.spacing, face_color="transparent")
            _gui.process_events_for(1.0)
            keys = list(truth.rois)
            cut = reshape_outline(truth.rois["PS_L"], _psoas_chord(truth), shape=data.shape[1:]).vertices
            reshaped = [
                np.column_stack([np.full(len(cut), k), cut]) if key == "PS_L" else s for key, s in zip(keys, shapes)
            ]
            out["stall_ms"] = _measure_stall(probe, lambda: setattr(layer, "data", reshaped), lambda: True)
        elif condition == "load":
            viewer.add_image(data, **kwargs)
            _gui.process_events_for(1.0)

            def load():
                viewer.add_shapes(shapes, shape_type="polygon", scale=volume.spacing, face_color="transparent")
                viewer.add_shapes(samples, shape_type="polygon", scale=volume.spacing, face_color="transparent")

            out["stall_ms"] = _measure_stall(probe, load, lambda: True)
        else:  # train, measure: the fat map, added beside the case's image and outlines
            viewer.add_image(data, **kwargs)
            viewer.add_shapes(shapes, shape_type="polygon", scale=volume.spacing, face_color="transparent")
            viewer.add_shapes(samples, shape_type="polygon", scale=volume.spacing, face_color="transparent")
            _gui.process_events_for(1.0)
            labels = np.zeros(data.shape, np.uint8)
            labels[k] = 1
            out["stall_ms"] = _measure_stall(
                probe, lambda: viewer.add_labels(labels, scale=volume.spacing), lambda: True
            )
    elif condition in ("open", "next"):
        study, _ = _gui.make_study(Path(folder) / "s", n_cases=2, seed=7, spacing=0.78125)
        _, widget = viewer.window.add_plugin_dock_widget("napari-pvm", "Reading session")
        widget.notify = lambda message, level="info": None
        widget.ask_unfinished = lambda why: "leave"
        widget.folder_edit.setText(str(study.folder))
        widget.observer_edit.setText("A")
        _gui.process_events_for(1.0)
        if condition == "open":
            out["stall_ms"] = _measure_stall(
                probe, widget.start, lambda: widget.ready and widget.image_layer is not None
            )
        else:
            widget.start()
            _gui.wait_until(lambda: widget.ready and widget.image_layer is not None, timeout=60)
            dock = widget.measure
            dock.notify = lambda message, level="info": None
            path = widget.session.save_annotation(truth)  # the observer's own outlines of this case
            dock.load_annotation(str(path))
            _gui.process_events_for(1.0)
            first = widget.image_layer
            out["stall_ms"] = _measure_stall(
                probe,
                widget.next,
                lambda: widget.ready and widget.image_layer is not first and first not in viewer.layers,
            )
    else:
        dock = _measure_dock(viewer, files)
        _gui.process_events_for(1.0)
        if condition == "load":
            out["stall_ms"] = _measure_stall(
                probe, lambda: dock.load_annotation(str(files["annotation"])), lambda: True
            )
        else:
            dock.load_annotation(str(files["annotation"]))
            _gui.process_events_for(1.0)
            if condition == "reshape":
                dock._reshape_action()
                _gui.process_events_for(0.5)
                out["stall_ms"] = _measure_stall(
                    probe, lambda: dock.reshape(_psoas_chord(truth)), lambda: dock._last_stroke is not None
                )
            elif condition == "train":
                panel = dock.classifier_panel
                out["stall_ms"] = _measure_stall(
                    probe, lambda: panel.train(), lambda: panel._worker is None and panel.result is not None
                )
            else:
                out["stall_ms"] = _measure_stall(
                    probe, lambda: dock.measure(), lambda: dock._worker is None and dock.results() is not None
                )
    print("RESULT " + json.dumps(out), flush=True)
    viewer.close()


def child_preview(folder, strokes=6):
    """Latency from stroke release to the drawn preview; prints one JSON line."""
    files = _phantom(folder)
    viewer = _viewer()
    dock = _measure_dock(viewer, files)
    dock.load_annotation(str(files["annotation"]))
    image = dock.image
    panel = dock.classifier_panel
    panel.live_check.setChecked(True)
    _gui.process_events_for(1.0)
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    drawn = []
    canvas.events.draw.connect(lambda event: drawn.append(time.perf_counter()), position="last")
    layer = panel.start_painting(2)
    layer.brush_size = 4
    viewer.reset_view()
    _gui.process_events_for(0.5)
    # strokes in the subcutaneous fat band below the back muscles (phantom rows ≈ 395-410)
    latencies, active_ok = [], True
    for i in range(strokes):
        row = 392 + 3 * i
        before = panel.preview_shown_at
        points = [(row, c) for c in range(200, 320, 10)]
        pts = [_gui.canvas_pos(viewer, image, r, c) for r, c in points]
        from qtpy.QtCore import QPointF, Qt
        from qtpy.QtGui import QMouseEvent
        from qtpy.QtTest import QTest
        from qtpy.QtWidgets import QApplication

        w = _gui.canvas_widget(viewer)
        QTest.mouseMove(w, pts[0])
        QTest.mousePress(w, Qt.MouseButton.LeftButton, pos=pts[0])
        for p in pts[1:]:
            ev = QMouseEvent(
                QMouseEvent.Type.MouseMove,
                QPointF(p),
                QPointF(w.mapToGlobal(p)),
                Qt.MouseButton.NoButton,
                Qt.MouseButton.LeftButton,
                Qt.KeyboardModifier.NoModifier,
            )
            QApplication.sendEvent(w, ev)
            QApplication.processEvents()
        released = time.perf_counter()
        QTest.mouseRelease(w, Qt.MouseButton.LeftButton, pos=pts[-1])
        _gui.wait_until(lambda b=before: panel.preview_shown_at is not None and panel.preview_shown_at != b, timeout=60)
        shown = panel.preview_shown_at
        _gui.wait_until(lambda s=shown: drawn and drawn[-1] > s, timeout=10)
        latencies.append(1000 * (min(t for t in drawn if t > shown) - released))
        active_ok &= (
            viewer.layers.selection.active is layer
            or getattr(viewer.layers.selection.active, "__wrapped__", None) is layer
        )
        _gui.process_events_for(0.3)
    print(
        "RESULT "
        + json.dumps(
            {
                "condition": "preview",
                "first_ms": latencies[0],
                "later_ms": latencies[1:],
                "paint_layer_stayed_active": bool(active_ok),
            }
        ),
        flush=True,
    )
    viewer.close()


# ===================================================================== parent
def _run(args_list):
    """The child's result, or None when it failed (reported)."""
    code, out, err = _gui.run_fresh([_gui.python(), __file__, *args_list], timeout=600)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = " | ".join(err.strip().splitlines()[-3:])
    print(f"FAILED: {' '.join(args_list[:3])} (exit {code}): {tail}", flush=True)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per condition and variant (default 5)")
    parser.add_argument("--only", nargs="*", default=None, help=f"preview and/or {', '.join(CONDITIONS)}")
    parser.add_argument("--child", nargs=3, metavar=("CONDITION", "VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--preview-child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.preview_child:
        child_preview(args.preview_child)
        return 0
    wanted = args.only or ["preview", *CONDITIONS]
    with open("/proc/loadavg") as fh:
        load_before = " ".join(fh.read().split()[:3])
    started = time.perf_counter()
    report = {}
    for _ in range(args.runs):  # conditions alternate, so all see the same machine load
        for condition in wanted:
            with tempfile.TemporaryDirectory() as tmp:
                if condition == "preview":
                    result = _run(["--preview-child", tmp])
                    if result is not None:
                        report.setdefault("preview", []).append(result)
                    continue
                for variant in ("floor", "pvm"):
                    result = _run(["--child", condition, variant, tmp])
                    if result is not None:
                        report.setdefault((condition, variant), []).append(result["stall_ms"])
    with open("/proc/loadavg") as fh:
        load_after = " ".join(fh.read().split()[:3])
    print(
        f"GUI benchmark: {args.runs} fresh processes per condition; load average {load_before} before, "
        f"{load_after} after; {time.perf_counter() - started:.0f} s"
    )
    if "preview" in report:
        runs = report["preview"]
        first = [r["first_ms"] for r in runs]
        later = [x for r in runs for x in r["later_ms"]]
        print(
            f"live preview, stroke release -> preview drawn (512 x 512): median {statistics.median(later):.0f} ms "
            f"over {len(later)} strokes (max {max(later):.0f}); first stroke of a process (features computed): "
            f"median {statistics.median(first):.0f} ms; paint layer stayed active: "
            f"{all(r['paint_layer_stayed_active'] for r in runs)}"
        )
    print(f"{'action':<10}{'napari alone (floor)':>22}{'napari-pvm':>14}{'excess':>10}   per-run napari-pvm (ms)")
    for condition in CONDITIONS:
        if (condition, "pvm") not in report or (condition, "floor") not in report:
            continue
        floor = statistics.median(report[(condition, "floor")])
        pvm = statistics.median(report[(condition, "pvm")])
        runs = ", ".join(f"{x:.0f}" for x in report[(condition, "pvm")])
        print(f"{condition:<10}{floor:>19.0f} ms{pvm:>11.0f} ms{pvm - floor:>7.0f} ms   {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
