"""Qt-free core of napari-pvm: one module per step of the data flow.

read image (``io``) → outlines (``rois``, ``annotation``, proposals in
``propose``) → features and fat classifier (``features``, ``forest``,
``classify``) → areas and FI% (``measure``) → shared CSV (``store``, names in
``schema``) → statistics (the ``stats`` subpackage). ``spine`` measures VBQ
and the kyphotic angle on sagittal images; ``session`` runs blinded reading
sessions and ``batch`` measures a worklist in parallel; ``tables`` reads
spreadsheet tables; ``phantom`` makes synthetic slices with exact ground
truth. Nothing here imports napari or Qt.

The public API is importable from here; each name is loaded on first use, so
``import napari_pvm.core`` stays cheap (no scikit-learn, matplotlib or Dask).

Examples
--------
>>> import napari_pvm.core as core
>>> core.format_p(0.0004)
'<0.001'
>>> "FatClassifier" in core.__all__
True
"""

import importlib

#: Public name → module of ``napari_pvm.core`` that defines it.
_API = {
    "PvmError": "errors",
    "read_volume": "io",
    "Volume": "io",
    "read_annotation": "annotation",
    "write_annotation": "annotation",
    "propose_outlines": "propose",
    "FatClassifier": "classify",
    "measure_annotation": "measure",
    "measure_masks": "measure",
    "append_rows": "store",
    "read_rows": "store",
    "latest_rows": "store",
    "migrate_csv": "migrate",
    "read_spine_annotation": "spine",
    "measure_spine": "spine",
    "read_table": "tables",
    "read_worklist": "batch",
    "run_batch": "batch",
    "create_study": "session",
    "write_phantom": "phantom",
    "analyse": "stats",
    "format_p": "stats",
    "inter_observer": "stats",
    "intra_observer": "stats",
}

__all__ = sorted(_API)


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
