"""Helpers for the GUI benchmarks: real mouse/key input on napari's canvas,
an event-loop stall probe, and a headless X server per run.

Used by ``bench_gui.py`` and ``run_next_crash.py``; nothing here is part of
the package.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ X server
def xvfb_command(argv, *, width=1920, height=1080):
    """``argv`` wrapped in ``xvfb-run`` with a screen of ``width`` × ``height``."""
    if shutil.which("xvfb-run") is None:
        raise SystemExit("xvfb-run is needed (apt-get install xvfb)")
    return ["xvfb-run", "-a", "-s", f"-screen 0 {width}x{height}x24 -nolisten tcp", *argv]


def run_fresh(argv, *, timeout=300, env=None):
    """Run ``argv`` under a fresh Xvfb; return (returncode, stdout, stderr).

    A negative return code is a signal (-11: segmentation fault)."""
    full_env = dict(os.environ, QT_QPA_PLATFORM="xcb", **(env or {}))
    full_env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(xvfb_command(argv), capture_output=True, text=True, timeout=timeout, env=full_env)
    code = proc.returncode
    # xvfb-run reports a child killed by a signal as 128 + signal
    if code > 128:
        code = -(code - 128)
    return code, proc.stdout, proc.stderr


# ------------------------------------------------------------ event loop
class StallProbe:
    """A 10 ms QTimer whose largest gap between ticks is the GUI stall.

    ``with probe.window("open"):`` records the largest gap (ms, beyond the
    10 ms period) while the block and the events it queued run.
    """

    def __init__(self, period_ms=10):
        from qtpy.QtCore import QTimer

        self.period = period_ms / 1000
        self.last = time.perf_counter()
        self.largest = 0.0
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.largest = max(self.largest, now - self.last - self.period)
        self.last = now

    def reset(self):
        self.last = time.perf_counter()
        self.largest = 0.0

    def stall_ms(self):
        # a gap still open counts too (the loop may be blocked right now)
        return 1000 * max(self.largest, time.perf_counter() - self.last - self.period)


def process_events_for(seconds):
    """Run the Qt event loop for ``seconds`` (the GUI stays live)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def wait_until(predicate, timeout=60.0, step=0.005):
    """Run the event loop until ``predicate()`` is true; raise on timeout."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise TimeoutError("condition not reached")
        QApplication.processEvents()
        time.sleep(step)


# ------------------------------------------------------ canvas input
def canvas_widget(viewer):
    return viewer.window._qt_viewer.canvas.native


def canvas_pos(viewer, layer, row, col):
    """Canvas pixel (x, y) of image pixel ``(row, col)`` of ``layer`` on the
    slice shown, through the layer's data→world transform and the camera."""
    from qtpy.QtCore import QPoint

    point = list(viewer.dims.point)
    data = list(layer.world_to_data(point[-layer.ndim :]))
    data[-2:] = [row, col]
    world = layer.data_to_world(data)
    canvas = viewer.window._qt_viewer.canvas
    # vispy's scene has x = displayed column axis, y = displayed row axis
    tr = canvas.view.scene.transform
    xy = tr.map([world[-1], world[-2], 0, 1])
    x, y = xy[0] / xy[3], xy[1] / xy[3]
    ratio = canvas_widget(viewer).devicePixelRatioF() or 1.0
    return QPoint(int(round(x / ratio)), int(round(y / ratio)))


def _qt_button():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


def click(viewer, layer, row, col):
    from qtpy.QtTest import QTest

    w = canvas_widget(viewer)
    pos = canvas_pos(viewer, layer, row, col)
    QTest.mouseMove(w, pos)
    QTest.mousePress(w, _qt_button(), pos=pos)
    QTest.mouseRelease(w, _qt_button(), pos=pos)


def drag(viewer, layer, points):
    """Press at the first (row, col), move through the others, release at the last."""
    from qtpy.QtCore import QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    w = canvas_widget(viewer)
    pts = [canvas_pos(viewer, layer, r, c) for r, c in points]
    QTest.mouseMove(w, pts[0])
    QTest.mousePress(w, _qt_button(), pos=pts[0])
    for p in pts[1:]:
        # QTest.mouseMove sends no buttons; a drag needs the button held
        ev = QMouseEvent(
            QMouseEvent.Type.MouseMove,
            QPointF(p),
            QPointF(w.mapToGlobal(p)),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(w, ev)
    QTest.mouseRelease(w, _qt_button(), pos=pts[-1])


def key(viewer, name, modifier=None):
    """Press a key on the canvas (``"Enter"``, ``"PageDown"``, ``"Escape"``…)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    code = getattr(Qt.Key, f"Key_{name}")
    mod = Qt.KeyboardModifier.NoModifier if modifier is None else modifier
    w = canvas_widget(viewer)
    w.setFocus()
    QTest.keyClick(w, code, mod)


def draw_polygon(viewer, layer, vertices):
    """Click each (row, col) vertex on the canvas and finish with Enter."""
    for r, c in vertices:
        click(viewer, layer, r, c)
    key(viewer, "Return")


def square(center, half):
    r, c = center
    return [(r - half, c - half), (r - half, c + half), (r + half, c + half), (r + half, c - half)]


# ------------------------------------------------------------ study
def make_study(folder, n_cases=3, *, seed=5, spacing=1.2):
    """A study folder of ``n_cases`` copies of one phantom (slice 2 = L4)."""
    from napari_pvm.core.phantom import write_phantom
    from napari_pvm.core.session import create_study

    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    files = write_phantom(folder / "phantom", seed=seed, spacing=spacing)
    cases = []
    for i in range(n_cases):
        pid = f"P{i + 1:03d}"
        shutil.copy(files["image"], images / f"{pid}.nii.gz")
        cases.append({"patient_id": pid, "image": f"images/{pid}.nii.gz", "slice_index": 2})
    study = create_study(folder / "study", [dict(c, image=f"../images/{c['patient_id']}.nii.gz") for c in cases])
    return study, files


def phantom_outline_points(files, key, n=8):
    """``n`` vertices of the phantom's true outline ``key`` (image pixels)."""
    from napari_pvm.core.annotation import read_annotation

    verts = np.asarray(read_annotation(files["annotation"]).rois[key])
    take = np.linspace(0, len(verts), n, endpoint=False).astype(int)
    return [tuple(v) for v in verts[take]]


def python():
    return sys.executable
