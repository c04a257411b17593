"""Open napari with an image (the phantom by default), its annotation and the napari-pvm docks."""

import os

from . import Outcome


def add_arguments(parser):
    parser.add_argument("image", nargs="?", help="NIfTI file or DICOM folder (default: the synthetic phantom)")
    parser.add_argument("--annotation", help="*.pvm.json annotation to load into the measurement dock")
    parser.add_argument("--json", action="store_true", help='print {"closed": true} as JSON when napari closes')


#: How to install a Qt binding, for a packaged and for an editable install.
QT_HINT = 'pip install "napari-pvm[qt]" (in a source checkout: pip install -e ".[qt]")'


def run(args):
    from ..core.errors import PvmError

    try:
        import qtpy  # noqa: F401 (fails without a Qt binding such as PyQt6)
    except ImportError:
        raise PvmError(f"napari-pvm gui needs a Qt binding, and none is installed: {QT_HINT}") from None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.name != "nt":
        raise PvmError("no display: run on a desktop, forward X (ssh -X), or use xvfb-run for a headless screen")
    import napari

    viewer = open_viewer(args.image, annotation=args.annotation)
    napari.run()
    viewer.close()
    return Outcome({"closed": True})


def open_viewer(image=None, *, annotation=None, show=True):
    """A viewer with the image (or phantom) and the measurement dock; returns it."""
    import napari

    viewer = napari.Viewer(show=show)
    if image:
        viewer.open(image, plugin="napari-pvm")
    else:
        viewer.open_sample("napari-pvm", "phantom")
    _, widget = viewer.window.add_plugin_dock_widget("napari-pvm", "Measure")
    if annotation:
        widget.load_annotation(annotation)
    return viewer
