"""Packaging: the manifest napari loads, the console script, a Qt-free core."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_manifest_is_the_one_npe2_loads_and_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-pvm")
    manifest.validate_imports()
    assert manifest.name == "napari-pvm"
    packaged = Path(sys.modules["napari_pvm"].__file__).parent / "napari.yaml"
    top = REPO / "napari.yaml"
    # one copy: the top-level file is a link to the packaged one
    assert top.resolve() == packaged.resolve()
    commands = {c.id for c in manifest.contributions.commands}
    assert {"napari-pvm.get_reader", "napari-pvm.phantom"} <= commands


def test_npe2_validate_cli_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "napari-pvm", "--imports"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_without_napari_or_qt():
    code = (
        "import sys, napari_pvm, napari_pvm.core\n"
        "from napari_pvm.core import io, rois, annotation, phantom, schema, errors\n"
        "import napari_pvm.cli\n"
        "napari_pvm.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("napari-pvm")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    import napari_pvm

    assert result.stdout.strip() == napari_pvm.__version__


def test_no_qt_binding_in_required_dependencies():
    from importlib.metadata import requires

    required = [r for r in requires("napari-pvm") if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in required}
    assert not names & {"pyqt5", "pyqt6", "pyside2", "pyside6"}
    assert {"napari", "magicgui", "qtpy", "nibabel", "pydicom", "numpy", "scipy", "scikit-image",
            "scikit-learn", "pandas"} <= names
