"""Regenerate the screenshots of README.md and docs/user-guide.md.

They are taken from a real napari window, on a virtual screen when there is
no display:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Each step drives the docks through the same methods a click calls.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"


def wait_for(predicate, app, timeout=120.0):
    start = time.monotonic()
    while not predicate():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("timed out waiting for the viewer")


def save(viewer, app, name):
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    IMAGES.mkdir(exist_ok=True)
    viewer.screenshot(str(IMAGES / name), canvas_only=False, flash=False)
    print("wrote", IMAGES / name)


def main():
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_pvm.core.phantom import write_phantom

    tmp = Path(tempfile.mkdtemp(prefix="pvm-shots-"))
    files = write_phantom(tmp, seed=0)
    viewer = napari.Viewer(title="napari-pvm")
    viewer.window._qt_window.resize(1500, 950)
    app = QApplication.instance()
    viewer.open(str(files["image"]), plugin="napari-pvm")
    _, dock = viewer.window.add_plugin_dock_widget("napari-pvm", "Measure")
    dock.notify = lambda message, level="info": print(f"[{level}] {message}")
    image = viewer.layers[0]
    step = list(viewer.dims.current_step)
    step[0] = 2
    viewer.dims.current_step = tuple(step)

    def frame_muscles():
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        camera.center = (300 * image.scale[1], 256 * image.scale[2])
        camera.zoom = 2.2

    def settle():
        for _ in range(10):
            app.processEvents()
            time.sleep(0.02)

    # 1. the L4 slice marked, two outlines drawn, the draw list on ES L
    dock.mark_level("L4")
    from napari_pvm.core.annotation import read_annotation

    truth = read_annotation(files["annotation"])
    layer = dock.outlines
    for key in ("PS_L", "PS_R"):
        layer.add_polygons([np.column_stack([np.full(len(truth.rois[key]), 2.0), truth.rois[key]])])
        settle()
    frame_muscles()
    save(viewer, app, "guide-1-outlining.png")

    # 2. proposals for the four back muscles from one click each
    from scipy import ndimage

    from napari_pvm.core.rois import roi_mask

    clicks = {}
    for key in ("ES_L", "ES_R", "MF_L", "MF_R"):
        depth = ndimage.distance_transform_edt(roi_mask(truth.rois[key], image.data.shape[-2:]))
        clicks[key] = np.unravel_index(int(np.argmax(depth)), depth.shape)
    try:
        dock.propose(clicks=clicks, wait=True)
        settle()
        frame_muscles()
        save(viewer, app, "guide-3-proposals.png")
    except Exception as exc:  # proposals not installed: keep the other pictures
        print("no proposal screenshot:", exc)

    # 3. a clip refused: an outline drawn across a narrow neighbour is marked on the canvas
    dock.reset_case()
    dock.mark_level("L4")
    mf = truth.rois["MF_L"]
    dock.choose("MF_L")
    layer.add_polygons([np.column_stack([np.full(len(mf), 2.0), mf])])
    settle()
    dock.choose("ES_L")
    r0, c0 = mf.min(axis=0)
    r1, c1 = mf.max(axis=0)
    mid = (r0 + r1) / 2
    across = np.array([[mid - 8, c0 - 15], [mid - 8, c1 + 15], [mid + 8, c1 + 15], [mid + 8, c0 - 15]])
    layer.add_polygons([np.column_stack([np.full(4, 2.0), across])])
    settle()
    frame_muscles()
    save(viewer, app, "guide-4-overlap-refused.png")
    dock.reset_case()

    # 4. the whole annotation, measured, with the yellow fat map
    dock.load_annotation(files["annotation"])
    dock.patient_edit.setText("PHANTOM")
    dock.observer_edit.setText("obsA")
    dock.measure(wait=True)
    for shown in list(viewer.layers):
        if (
            shown.metadata.get("napari_pvm", {}).get("role") in ("marker", "clicks")
            if isinstance(shown.metadata.get("napari_pvm"), dict)
            else False
        ):
            shown.visible = False
    frame_muscles()
    save(viewer, app, "napari-pvm-measure.png")
    viewer.layers[f"{image.name} muscle outlines"].visible = False
    save(viewer, app, "guide-2-fat-map.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
