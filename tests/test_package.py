"""Packaging: the manifest napari loads, the console script, a Qt-free core."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]  # the checkout (not imported from conftest: tests/widgets has one too)


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
    assert {
        "napari",
        "magicgui",
        "qtpy",
        "nibabel",
        "pydicom",
        "numpy",
        "scipy",
        "scikit-image",
        "pandas",
        "tqdm",
    } <= names


def _pyproject_dependencies():
    import tomllib

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    deps = tomllib.loads(text)["project"]["dependencies"]
    return {d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower() for d in deps}


def test_scikit_learn_is_required_only_if_the_package_imports_it():
    import re

    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "src" / "napari_pvm").rglob("*.py"))
    imports_sklearn = re.search(r"^\s*(import sklearn|from sklearn)", source, re.MULTILINE) is not None
    assert ("scikit-learn" in _pyproject_dependencies()) == imports_sklearn


def test_core_exports_the_public_api_lazily():
    code = (
        "import sys, napari_pvm.core as core\n"
        "heavy = sorted(m for m in ('sklearn', 'matplotlib', 'dask', 'distributed', 'numba', 'pandas') "
        "if m in sys.modules)\n"
        "missing = [n for n in core.__all__ if getattr(core, n, None) is None]\n"
        "print(heavy, missing, len(core.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("[] [] "), out.stdout  # nothing heavy on import; every name resolves
    import napari_pvm.core as core

    for name in (
        "FatClassifier",
        "measure_annotation",
        "append_rows",
        "read_rows",
        "read_volume",
        "propose_outlines",
        "analyse",
        "read_table",
    ):
        assert name in core.__all__
    with pytest.raises(AttributeError):
        core.no_such_name  # noqa: B018


def test_demo_takes_paths_relative_to_the_callers_folder(tmp_path):
    import os

    from napari_pvm.core.phantom import write_phantom
    from napari_pvm.core.store import read_rows

    write_phantom(tmp_path / "case", seed=3, n_slices=3, spacing=1.2)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PVM_SKIP_SETUP="1", PVM_DEMO_DIR="demo-out", PVM_PATIENT="P7")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), "case/phantom.nii.gz", "case/phantom.pvm.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "demo-out" / "measurements.csv")
    assert list(rows["patient_id"]) == ["P7"]
