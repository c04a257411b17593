"""Regenerate the screenshots of docs/spine.md from a real napari window.

On a machine without a display, use a virtual screen:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_spine_screenshots.py

The sagittal phantom (seed 0, 0.75 mm pixels, noise and shading on) is
written to a temporary folder; the Spine measures dock loads its true
annotation through the same method its "Load annotation…" button calls.
"""

import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


def settle(app, n=25):
    for _ in range(n):
        app.processEvents()
        time.sleep(0.02)


def save(viewer, app, name):
    settle(app)
    IMAGES.mkdir(exist_ok=True)
    viewer.screenshot(str(IMAGES / name), canvas_only=False, flash=False)
    print("wrote", IMAGES / name)


def main():
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_pvm.core.phantom_sagittal import write_sagittal_phantom

    tmp = Path(tempfile.mkdtemp(prefix="pvm-spine-shots-"))
    files = write_sagittal_phantom(tmp, seed=0)
    viewer = napari.Viewer(title="napari-pvm")
    viewer.window._qt_window.resize(1500, 950)
    app = QApplication.instance()
    viewer.open(str(files["image"]), plugin="napari-pvm")
    _, dock = viewer.window.add_plugin_dock_widget("napari-pvm", "Spine measures")
    dock.notify = lambda message, level="info": print(f"[{level}] {message}")
    dock.load_annotation(files["annotation"])
    dock.patient_edit.setText("007")
    dock.observer_edit.setText("obsA")
    viewer.scale_bar.visible = True
    settle(app)
    viewer.reset_view()
    save(viewer, app, "spine-1-dock.png")
    # close-up of the fractured level and the two endplate lines
    image = viewer.layers[0]
    viewer.camera.center = (0, 95 * image.scale[1], 70 * image.scale[2])
    viewer.camera.zoom = viewer.camera.zoom * 1.9
    save(viewer, app, "spine-2-angle.png")
    viewer.close()


if __name__ == "__main__":
    main()
