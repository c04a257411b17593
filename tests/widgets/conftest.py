"""Widget-test helpers: real mouse and key events on the napari canvas.

GUI tests of drawing and editing go through the same path as a user's hand:
Qt events sent to ``viewer.window._qt_viewer.canvas.native``, with image
pixels mapped to canvas positions through the camera (layer data → world →
vispy scene → canvas pixels). Nothing here touches a layer's internals.

Use the ``canvas`` fixture::

    def test_x(make_napari_viewer, canvas):
        viewer = make_napari_viewer()
        ...
        c = canvas(viewer)
        c.polygon(image_layer, [(100, 100), (100, 140), (140, 140)], finish="enter")
        c.key("z", "ctrl")
"""

import sys
from pathlib import Path

import numpy as np
import pytest

# the DICOM writer of tests/core/test_io.py is reused by widget tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))


_MODIFIERS = {
    "shift": "ShiftModifier",
    "ctrl": "ControlModifier",
    "control": "ControlModifier",
    "alt": "AltModifier",
    "meta": "MetaModifier",
}


class Canvas:
    """Send real Qt mouse and key events to a viewer's canvas.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (its window must be shown; ``make_napari_viewer`` does it).
    pause_ms : int
        Time given to the event loop after every event (napari throttles
        mouse moves by 5 ms).
    """

    def __init__(self, viewer, *, pause_ms=15, fit=True):
        self.viewer = viewer
        self.pause_ms = pause_ms
        self.widget = viewer.window._qt_viewer.canvas.native
        if fit:
            self.fit()

    def fit(self):
        """Let docks and the window finish their layout, then fit the data
        into the canvas (mapping is only valid once the canvas has its size)."""
        self.wait(150)
        self.viewer.reset_view()
        self.wait(50)

    # ------------------------------------------------------------ mapping
    def world_to_canvas(self, world):
        """Canvas position (x, y) in widget pixels of a full world point."""
        vcanvas = self.viewer.window._qt_viewer.canvas
        view = vcanvas.view
        displayed = self.viewer.dims.displayed
        yx = [float(world[d]) for d in displayed][-2:]
        transform = view.transform * view.scene.transform
        mapped = transform.map([yx[1], yx[0], 0, 1])
        x, y = mapped[0] / mapped[3], mapped[1] / mapped[3]
        # vispy maps in physical pixels; Qt events use logical pixels
        ratio = self.widget.devicePixelRatioF() if hasattr(self.widget, "devicePixelRatioF") else 1.0
        return x / ratio, y / ratio

    def pixel_to_canvas(self, layer, rc):
        """Canvas (x, y) of the image pixel ``rc`` = (row, col) of ``layer``
        on the slice the viewer shows (a 3D layer uses the current slice)."""
        rc = np.asarray(rc, dtype=float)
        if layer.ndim == 3:
            world_now = np.asarray(self.viewer.dims.point)[-3:]
            k = float(layer.world_to_data(world_now)[0])
            data = np.array([k, rc[0], rc[1]])
        else:
            data = rc
        world = np.asarray(layer.data_to_world(data), dtype=float)
        full = np.array(self.viewer.dims.point, dtype=float)
        full[-len(world) :] = world
        return self.world_to_canvas(full)

    def visible(self, layer, rc):
        """Whether pixel ``rc`` of ``layer`` lies inside the canvas widget."""
        x, y = self.pixel_to_canvas(layer, rc)
        return 0 <= x < self.widget.width() and 0 <= y < self.widget.height()

    # ------------------------------------------------------------- events
    def _point(self, xy):
        from qtpy.QtCore import QPointF

        return QPointF(float(xy[0]), float(xy[1]))

    def _mods(self, modifiers):
        from qtpy.QtCore import Qt

        out = Qt.KeyboardModifier.NoModifier
        for name in modifiers or ():
            out |= getattr(Qt.KeyboardModifier, _MODIFIERS[name.lower()])
        return out

    def _send_mouse(self, kind, xy, *, button="left", buttons=None, modifiers=()):
        from qtpy.QtCore import QEvent, Qt
        from qtpy.QtGui import QMouseEvent
        from qtpy.QtWidgets import QApplication

        qbutton = {
            "left": Qt.MouseButton.LeftButton,
            "right": Qt.MouseButton.RightButton,
            None: Qt.MouseButton.NoButton,
        }[button]
        qbuttons = qbutton if buttons is None else buttons
        types = {
            "press": QEvent.Type.MouseButtonPress,
            "release": QEvent.Type.MouseButtonRelease,
            "move": QEvent.Type.MouseMove,
            "double": QEvent.Type.MouseButtonDblClick,
        }
        local = self._point(xy)
        glob = self.widget.mapToGlobal(local)
        event = QMouseEvent(types[kind], local, glob, qbutton, qbuttons, self._mods(modifiers))
        QApplication.sendEvent(self.widget, event)
        self.wait()

    def wait(self, ms=None):
        from qtpy.QtTest import QTest

        QTest.qWait(self.pause_ms if ms is None else ms)

    def move(self, xy, *, pressed=False, modifiers=()):
        """Move the mouse to canvas position ``xy`` (button held when ``pressed``)."""
        from qtpy.QtCore import Qt

        held = Qt.MouseButton.LeftButton if pressed else Qt.MouseButton.NoButton
        self._send_mouse("move", xy, button=None, buttons=held, modifiers=modifiers)

    def press(self, xy, *, modifiers=()):
        self._send_mouse("press", xy, modifiers=modifiers)

    def release(self, xy, *, modifiers=()):
        from qtpy.QtCore import Qt

        self._send_mouse("release", xy, buttons=Qt.MouseButton.NoButton, modifiers=modifiers)

    def click(self, xy, *, modifiers=()):
        """Move there, press and release (a plain click)."""
        self.move(xy, modifiers=modifiers)
        self.press(xy, modifiers=modifiers)
        self.release(xy, modifiers=modifiers)

    def double_click(self, xy):
        """What Qt delivers for a real double click: press, release, double-click, release."""
        from qtpy.QtCore import Qt

        self.move(xy)
        self.press(xy)
        self.release(xy)
        self._send_mouse("double", xy)
        self._send_mouse("release", xy, buttons=Qt.MouseButton.NoButton)

    def drag(self, start, end, *, steps=6, modifiers=()):
        """Press at ``start``, move in ``steps`` to ``end`` with the button held, release."""
        self.move(start, modifiers=modifiers)
        self.press(start, modifiers=modifiers)
        for t in np.linspace(0, 1, steps + 1)[1:]:
            xy = (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
            self.move(xy, pressed=True, modifiers=modifiers)
        self.release(end, modifiers=modifiers)

    def key(self, key, *modifiers):
        """Press and release a key on the canvas: ``key("Return")``, ``key("z", "ctrl")``.

        ``key`` is a Qt key name without ``Key_`` (``"Return"``, ``"Escape"``,
        ``"Delete"``, ``"Backspace"``, ``"m"``, ``"1"`` …).
        """
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        name = key if len(key) > 1 else key.upper()
        qkey = getattr(Qt.Key, f"Key_{name}")
        QTest.keyClick(self.widget, qkey, self._mods(modifiers))
        self.wait()

    # ------------------------------------------------------- in pixels
    def pixel_click(self, layer, rc, **kw):
        self.click(self.pixel_to_canvas(layer, rc), **kw)

    def pixel_drag(self, layer, start_rc, end_rc, **kw):
        self.drag(self.pixel_to_canvas(layer, start_rc), self.pixel_to_canvas(layer, end_rc), **kw)

    def pixel_stroke(self, layer, points_rc, *, steps=4):
        """A freehand stroke: press on the first of ``points_rc`` (image
        pixels of ``layer``), move through the others with the button held
        (``steps`` moves per segment), release on the last."""
        points = [np.asarray(self.pixel_to_canvas(layer, rc), dtype=float) for rc in points_rc]
        self.move(tuple(points[0]))
        self.press(tuple(points[0]))
        for a, b in zip(points[:-1], points[1:]):
            for t in np.linspace(0, 1, steps + 1)[1:]:
                self.move(tuple(a + t * (b - a)), pressed=True)
        self.release(tuple(points[-1]))

    def polygon(self, layer, vertices_rc, *, finish="enter"):
        """Draw a polygon by clicking its vertices (image pixels of ``layer``),
        finished with ``"enter"``, ``"double"`` (double click on the last
        vertex), ``"escape"`` or ``None`` (left in progress).

        The outlines layer must be active in polygon mode (the dock does it).
        """
        points = [self.pixel_to_canvas(layer, rc) for rc in vertices_rc]
        last = len(points) - 1
        for i, xy in enumerate(points):
            if finish == "double" and i == last:
                # the double click's own presses land on the last vertex
                self.move(xy)
                self.press(xy)
                self.release(xy)
                from qtpy.QtCore import Qt

                self._send_mouse("double", xy)
                self._send_mouse("release", xy, buttons=Qt.MouseButton.NoButton)
            else:
                self.click(xy)
        if finish == "enter":
            self.key("Return")
        elif finish == "escape":
            self.key("Escape")


@pytest.fixture
def canvas():
    """``canvas(viewer) -> Canvas``: real mouse/key events on the viewer's canvas."""
    return Canvas


@pytest.fixture
def measure_case(make_napari_viewer, qtbot, phantom_files, canvas):
    """Phantom open, Measure dock docked, L4 (slice 2) marked with the K key;
    returns (dock, Canvas). Notifications go to ``dock.messages``; dialogs
    take ``dock.answers`` (default: no)."""
    from napari_pvm._widgets.measure_widget import MeasureWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(phantom_files["image"]), plugin="napari-pvm")
    dock = MeasureWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Measure")
    dock.messages = []
    dock.notify = lambda message, level="info": dock.messages.append((level, message))
    dock.answers = []
    dock.confirm = lambda title, text: dock.answers.pop(0) if dock.answers else False
    step = list(viewer.dims.current_step)
    step[0] = 2
    viewer.dims.current_step = tuple(step)
    c = canvas(viewer)
    c.key("k")  # mark the slice shown as L4
    assert dock.slice_index == 2
    return dock, c
