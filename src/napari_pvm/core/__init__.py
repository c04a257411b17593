"""Qt-free core of napari-pvm: one module per step of the data flow.

read image (``io``) → outlines (``rois``, ``annotation``) → features and fat
classifier (``features``, ``classify``) → areas and FI% (``measure``) → shared
CSV (``store``) → statistics (``stats``, ``reliability``). ``phantom`` makes
synthetic lumbar slices with exact ground truth. Nothing here imports napari
or Qt.
"""
